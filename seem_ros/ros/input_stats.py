"""Per-input receive statistics for ``~/diagnostics``: what arrived, at what rate, and what the
transport lost (gaps in the header stamps), next to what the node dropped by design."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Dict

GAP_FACTOR = 1.5
"""A stamp step longer than this many nominal periods means frames were lost in transport."""
PERIOD_WINDOW = 31
"""Recent stamp steps whose median is the input's nominal period."""


class InputStats:
    """Counts of one input: ``received``, ``rate_hz`` (over the last report interval) and
    ``missing`` (frames lost before they reached the node, estimated from the stamps: a step of
    k nominal periods, k >= :data:`GAP_FACTOR`, misses round(k) - 1 frames)."""

    def __init__(self):
        self.received = 0
        self.missing = 0
        self._steps: deque = deque(maxlen=PERIOD_WINDOW)
        self._last_stamp_ns = None
        self._window_start = time.monotonic()
        self._window_count = 0
        self._lock = threading.Lock()

    def add(self, stamp_ns: int) -> None:
        with self._lock:
            self.received += 1
            self._window_count += 1
            last, self._last_stamp_ns = self._last_stamp_ns, stamp_ns
            if last is None or stamp_ns <= last:
                return
            step = stamp_ns - last
            if self._steps:
                period = sorted(self._steps)[len(self._steps) // 2]
                if step >= GAP_FACTOR * period:
                    self.missing += int(round(step / period)) - 1
            self._steps.append(step)

    def report(self) -> Dict[str, float]:
        """``received``, ``rate_hz`` since the previous report, ``missing``; starts a new window."""
        with self._lock:
            now = time.monotonic()
            rate = self._window_count / max(now - self._window_start, 1e-9)
            self._window_start, self._window_count = now, 0
            return {'received': self.received, 'rate_hz': round(rate, 2), 'missing': self.missing}
