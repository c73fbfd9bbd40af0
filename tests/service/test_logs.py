"""Log lines leave the process whole and in order, one write per event-loop iteration
rather than one per line, and none is lost when the process stops."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

from signer.service.logs import IterationBuffer


class CountingStream(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


class TestIterationBuffer:
    async def test_the_lines_of_one_iteration_go_out_in_one_write(self) -> None:
        """Catches: a write (a system call on a real file) per line, which the access log
        of a busy service pays per request."""
        stream = CountingStream()
        buffer = IterationBuffer(stream)
        for n in range(100):
            buffer.write(b"line %d\n" % n)
            buffer.flush()
        assert stream.writes == 0  # not before the iteration ends
        await asyncio.sleep(0)
        assert stream.writes == 1
        assert stream.getvalue() == b"".join(b"line %d\n" % n for n in range(100))

    def test_outside_a_loop_every_flush_writes(self) -> None:
        """Catches: a start-up or shutdown line held back with no loop left to write it."""
        stream = CountingStream()
        buffer = IterationBuffer(stream)
        buffer.write(b"starting\n")
        buffer.flush()
        assert stream.getvalue() == b"starting\n"

    def test_what_is_buffered_is_written_when_the_process_exits(self) -> None:
        """A line logged in the loop's last iteration still reaches the file when the
        process ends right after (``sys.exit`` inside the loop).

        Catches: lines of the final iteration lost (the last access lines, "stopped")."""
        code = (
            "import asyncio, sys\n"
            "from signer.service.logs import IterationBuffer\n"
            "buffer = IterationBuffer(sys.stdout.buffer)\n"
            "async def main():\n"
            "    buffer.write(b'last line\\n'); buffer.flush()\n"
            "    sys.exit(0)\n"
            "asyncio.run(main())\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        assert out.stdout == b"last line\n"
