"""Log lines leave the process whole and in order, one write per event-loop iteration
rather than one per line, and none is lost when the process stops."""

from __future__ import annotations

import asyncio
import io
import json
import re
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


class TestAccessLine:
    def test_it_reads_as_structlog_would_have_written_it(self) -> None:
        """In JSON format the access line, rendered without structlog's processor chain,
        has the keys, order and timestamp form of the same line written through
        structlog, and lands in the same stream.

        Catches: a line a log pipeline would parse differently (a missing ``level`` or
        ``timestamp``, another time format) for the one line written per request."""
        code = (
            "import sys\n"
            "from signer.service import logs\n"
            "logs.configure('json', 'info')\n"
            "for args in [\n"
            "    ('r1', 'POST', '/v1/usersig', 200, None, None, 'ok', 0.0005),\n"
            "    ('r2', 'PATCH', '/v1/{x}', 422, 'a \"q\" \\\\ \u00e9', 1400000001, 'x', 1.5),\n"
            "]:\n"
            "    names = ['request_id', 'method', 'route', 'status', 'caller', 'sdkappid',\n"
            "             'outcome']\n"
            "    fields = dict(zip(names, args))\n"
            "    fields['latency_ms'] = round(args[-1] * 1000, 3)\n"
            "    logs.get_logger('x').info('request', **fields)\n"
            "    logs.access_line(*args)\n"
            "    sys.stderr.flush()\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        lines = [json.loads(line) for line in out.stderr.splitlines()]
        assert len(lines) == 4, out.stderr
        for via_structlog, direct in (lines[0:2], lines[2:4]):
            assert list(direct) == list(via_structlog)
            assert {k: v for k, v in direct.items() if k != "timestamp"} == {
                k: v for k, v in via_structlog.items() if k != "timestamp"
            }
        pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
        assert re.fullmatch(pattern, direct["timestamp"]), direct["timestamp"]
        # (datetime.isoformat leaves the fraction out when it is .000000)
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", via_structlog["timestamp"]
        )
