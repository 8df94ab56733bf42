"""A minimal progress bar on stderr (no tqdm dependency).

On a terminal it redraws one line with ``\\r``; otherwise (CI logs, pipes) it prints a
plain line at most every ``min_interval`` seconds and at the end.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", *, stream=None, width: int = 30,
                 min_interval: float | None = None, enabled: bool = True):
        self.total = max(int(total), 1)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = (0.1 if self.tty else 5.0) if min_interval is None else min_interval
        self.n = 0
        self.postfix = ""
        self._start = time.perf_counter()
        self._last = float("-inf")
        self._drawn = -1
        self._closed = False

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.n = min(self.n + n, self.total)
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.n >= self.total or now - self._last >= self.min_interval:
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        frac = self.n / self.total
        filled = int(round(frac * self.width))
        elapsed = now - self._start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        bar = "#" * filled + "-" * (self.width - filled)
        eta_s = "?" if eta != eta else f"{eta:.0f}s"
        text = f"{self.desc} [{bar}] {self.n}/{self.total} {elapsed:.0f}s<{eta_s}"
        return f"{text} {self.postfix}".rstrip()

    def _draw(self, now: float) -> None:
        if not self.enabled:
            return
        self._drawn = self.n
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            if self._drawn != self.n:
                self._draw(time.perf_counter())
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
