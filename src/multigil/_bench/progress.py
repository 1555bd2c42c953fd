"""A dependency-free progress display for long benchmark runs.

On a terminal it is one line, rewritten in place with ``\\r``; elsewhere (CI
logs, pipes, files) rewriting makes a mess, so it prints a plain line only at
each new phase. It writes to stderr so that the results on stdout stay clean.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts steps and shows where the run is.

    Parameters
    ----------
    total : int
        Number of steps the run will take (for the ``[k/total]`` counter).
    stream : text stream, optional
        Where to write; stderr by default.
    tty : bool, optional
        Force the single-line (True) or plain-lines (False) style; by default
        it is chosen by ``stream.isatty()``.
    enabled : bool
        False silences it entirely.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        enabled: bool = True,
    ) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.enabled = enabled
        self._phase = ""
        self._width = 0  # length of the line now on screen, to blank it out
        self._start = time.perf_counter()

    def _prefix(self) -> str:
        elapsed = time.perf_counter() - self._start
        pct = 100 * self.done // self.total
        return f"[{self.done:>{len(str(self.total))}}/{self.total} {pct:3d}% {elapsed:5.1f}s]"

    def phase(self, text: str) -> None:
        """Start a new phase (e.g. ``"cpu, round 2/5"``)."""
        self._phase = text
        if not self.enabled:
            return
        if self.tty:
            self._draw(text)
        else:
            self.stream.write(f"multigil bench {self._prefix()} {text}\n")
            self.stream.flush()

    def step(self, label: str = "") -> None:
        """Start the next step; on a terminal, show *label* as what runs now.

        The counter shows the steps finished before this one.
        """
        if self.enabled and self.tty:
            self._draw(f"{self._phase}: {label}" if label else self._phase)
        self.done = min(self.total, self.done + 1)

    def _draw(self, text: str) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        line = f"{self._prefix()} {text}"[: max(10, columns - 1)]
        # Pad with blanks over whatever the previous, longer line left behind.
        self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """Erase the progress line (terminal) so the results start on a clean line."""
        if self.enabled and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
