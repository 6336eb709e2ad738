"""How busy the machine was while a candidate was being timed.

Latency and CPU cost are measured on whatever machine ``adaptlab run`` runs on; when
other processes compete for its cores, every timing grows (on 2 cores, a second torch
job made encoder latency 30x slower). :class:`LoadMeter` measures the share of the
machine's CPU time that went to *other* processes during a measurement, from the
system-wide and this process's CPU counters (psutil), so the report can say when a
figure was taken on a loaded machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

#: Above this share of all cores busy with other work, timings are reported as unreliable.
LOADED_SHARE = 0.25


@dataclass
class LoadMeter:
    """Context manager; afterwards ``other_share`` is in [0, 1] (None where unmeasurable)."""

    other_share: float | None = None
    cpus: int = 1

    def __enter__(self) -> LoadMeter:
        try:
            import psutil  # type: ignore[import-untyped]

            self._psutil = psutil
            self._proc = psutil.Process()
            self.cpus = psutil.cpu_count() or 1
            self._start = (self._busy(), self._own(), time.perf_counter())
        except Exception:  # no psutil, or a platform without the counters
            self._psutil = None
        return self

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))

    def _own(self) -> float:
        t = self._proc.cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._psutil is None:
            return
        busy0, own0, wall0 = self._start
        wall = time.perf_counter() - wall0
        if wall <= 0.05:  # too short to say anything
            return
        other = (self._busy() - busy0) - (self._own() - own0)
        self.other_share = min(max(other / (wall * self.cpus), 0.0), 1.0)

    def as_info(self) -> dict[str, float | int] | None:
        """What a result stores: ``{"other_cpu_share": 0.4, "cpus": 2}``, or None."""
        if self.other_share is None:
            return None
        return {"other_cpu_share": round(self.other_share, 3), "cpus": self.cpus}
