"""Progress of long work: a tqdm bar on a terminal; where no terminal is attached (a GPU launcher's log
file, a batch scheduler), a log line every `Every` steps or seconds with the count, the rate, the ETA and
whatever the caller reports (e.g. the running loss).

What the caller reports is a function, called only when a line or bar refresh is due, so a training loop
that keeps its sums on the GPU reads them (a host sync) at those points only.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

LOG = logging.getLogger("quixer_rna.progress")
# Terminal bars refresh what the caller reports at most this often (seconds).
BAR_REFRESH = 1.0


@dataclass(frozen=True)
class Every:
    """An interval in steps or in seconds of wall time (0 or None: never)."""

    steps: int | None = None
    seconds: float | None = None

    def due(self, steps: int, seconds: float) -> bool:
        if self.steps:
            return steps >= self.steps
        return bool(self.seconds) and seconds >= self.seconds

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps else f"{self.seconds:g} s"


def on_terminal() -> bool:
    return sys.stderr.isatty()


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Count work done towards `total` (None: unknown, as for the records of a FASTA being read: the log line
    then gives the count and rate, no ETA); see the module docstring."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "step",
        initial: int = 0,
        every: Every = Every(seconds=60),
        report: Callable[[], dict[str, Any]] | None = None,
        enabled: bool = True,
    ):
        self.total, self.desc, self.unit, self.every, self.report = total, desc, unit, every, report
        self.done = initial
        self.enabled = enabled
        self._bar = None
        self._started = self._last_time = time.monotonic()
        self._start_done = self._last_done = initial
        self._last_report = 0.0
        if enabled and on_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(n)
            if self.report is not None and now - self._last_report >= BAR_REFRESH:
                self._last_report = now
                self._bar.set_postfix(self.report(), refresh=False)
            return
        if self.enabled and self.every.due(self.done - self._last_done, now - self._last_time):
            self.log_line(now)

    def log_line(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed = now - self._started
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        extra = ""
        if self.report is not None:
            extra = " " + " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.report().items())
        if self.total is None:
            LOG.info("%s: %d %s%s, %.3g %s/s", self.desc, self.done, self.unit + "s", extra, rate, self.unit)
        else:
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            eta = _duration(left) if left == left else "?"
            LOG.info("%s: %d/%d %s%s, %.3g %s/s, ETA %s", self.desc, self.done, self.total, self.unit + "s", extra,
                     rate, self.unit, eta)
        self._last_time, self._last_done = now, self.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
