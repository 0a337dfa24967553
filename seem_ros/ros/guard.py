"""One exception boundary for every entry point of a node: no callback can end the process.

rclpy ends ``spin`` when a subscription, service, timer or lifecycle-service callback raises, and
a lifecycle transition callback that raises turns silently into ERROR. :class:`EntryGuard` wraps
each callback once, where it is registered: an unexpected exception is logged once per cause
(throttled; the text is clipped and its control characters escaped), counted per entry point for
``~/diagnostics``, and answered with the entry's failure value (a service: ``success: false`` with
the reason; a parameter change: refused with the reason; a transition: ERROR).
"""
from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from typing import Callable, Optional

from rcl_interfaces.msg import SetParametersResult

LOG_TEXT_LIMIT = 300
"""Longest piece of untrusted text (a message field, an exception text) a log line carries."""

THROTTLE_PERIOD_S = 5.0
"""Seconds a cause stays silent after it was logged (a per-image problem repeats on every frame)."""

THROTTLE_CAPACITY = 100
"""Causes a :class:`KeyedThrottle` remembers; past that it forgets those silent for a whole period."""


def clip_text(text: str, limit: int = LOG_TEXT_LIMIT) -> str:
    """``text`` safe for a log line: control characters escaped, cut to ``limit`` characters."""
    safe = ''.join(c if c.isprintable() else repr(c)[1:-1] for c in str(text)[:limit + 1])
    return safe if len(safe) <= limit else f'{safe[:limit]}... ({len(text)} characters)'


class KeyedThrottle:
    """Lets each distinct key through at most once per ``period`` seconds (for per-image problems);
    remembers at most ``capacity`` recent keys."""

    def __init__(self, period: float = THROTTLE_PERIOD_S, capacity: int = THROTTLE_CAPACITY):
        self.period = period
        self.capacity = capacity
        self._last: dict = {}
        self._lock = threading.Lock()

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.period) < self.period:
                return False
            if len(self._last) > self.capacity:
                self._last = {k: t for k, t in self._last.items() if now - t < self.period}
            self._last[key] = now
            return True


def service_failure(reason: str, request, response):
    """A service's answer to a request its callback failed on: ``success: false`` + the reason."""
    if hasattr(response, 'success'):
        response.success = False
    if hasattr(response, 'message'):
        response.message = reason
    return response


def parameters_refused(reason: str, *_args) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


class EntryGuard:
    """Wraps node callbacks so that an exception is reported, counted and answered, never raised.

    Args:
        logger: the node's logger.
        throttle: decides whether a cause is logged now (:class:`KeyedThrottle`).
    """

    def __init__(self, logger, throttle: KeyedThrottle):
        self.logger = logger
        self.throttle = throttle
        self.errors: Counter = Counter()       # entry point -> unexpected exceptions
        self.last_error = ''
        self._lock = threading.Lock()

    def report(self, entry: str, exc: BaseException) -> str:
        """Log (throttled) and count an unexpected exception of ``entry``; returns the reason."""
        reason = f'{type(exc).__name__}: {clip_text(str(exc))}'
        with self._lock:
            self.errors[entry] += 1
            self.last_error = f'{entry}: {reason}'
        if self.throttle(f'{entry}: {type(exc).__name__}: {exc}'[:LOG_TEXT_LIMIT]):
            self.logger.error(f'{entry}: unexpected {reason} (the node keeps serving; repeats are logged every '
                              f'{self.throttle.period:g} s)')
        return reason

    def __call__(self, entry: str, callback: Callable, failed: Optional[Callable] = None) -> Callable:
        """``callback`` guarded; on an exception it returns ``failed(reason, *args)`` (or None)."""
        if getattr(callback, '__guarded__', False):
            return callback

        @functools.wraps(callback)
        def guarded(*args):
            try:
                return callback(*args)
            except Exception as exc:  # noqa: BLE001 - the boundary of every entry point
                reason = self.report(entry, exc)
                return failed(reason, *args) if failed is not None else None

        guarded.__guarded__ = True  # type: ignore[attr-defined]  # a function attribute, unknown to mypy
        return guarded

    def total(self) -> int:
        with self._lock:
            return sum(self.errors.values())


class SourceRate:
    """Admits at most ``rate`` events per second per source (a token bucket of ``rate`` tokens,
    at least one), so that one flooding tool cannot starve the others."""

    def __init__(self, rate: float):
        self.rate = rate
        self._buckets: dict = {}            # source -> (tokens, monotonic time of the last refill)
        self._lock = threading.Lock()

    def __call__(self, source: str) -> bool:
        now = time.monotonic()
        capacity = max(self.rate, 1.0)
        with self._lock:
            tokens, last = self._buckets.get(source, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * self.rate)
            admitted = tokens >= 1.0
            self._buckets[source] = (tokens - 1.0 if admitted else tokens, now)
            return admitted
