"""The progress bar of the long-running commands (``bulk``, ``warm``)."""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar on a terminal, nothing otherwise (a pipe or a log gets the summary line
    the command prints at the end)."""

    def __init__(self, total: int | None, unit: str = "tok") -> None:
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
