"""A small progress bar on stderr for long command-line jobs (scene generation, replay, export).

Usage::

    with Progress(total=len(frames), label='render') as bar:
        for frame in frames:
            ...
            bar.update()

On a terminal it redraws one line (``render [#######.......] 42/150  28%  61.3 it/s  ETA 0:02``)
at most every ``interval`` seconds. It prints nothing when the stream is not a terminal, unless
``enabled=True``; then it writes a plain line every ``interval`` seconds (default 5 s) so logs
stay readable.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO


class Progress:
    """Counts finished items and shows count, percentage, rate and ETA.

    Args:
        total: expected number of items, or None when unknown (no bar, no ETA).
        label: text in front of the bar.
        unit: name of an item in the rate (``frames/s``).
        stream: where to draw (default ``sys.stderr``).
        enabled: force drawing on or off; None = only when ``stream`` is a terminal.
        interval: minimum seconds between redraws (default 0.1 on a terminal, 5 otherwise).
        clock: monotonic time source in seconds.
    """

    def __init__(self, total: Optional[int] = None, label: str = '', *, unit: str = 'it',
                 stream: Optional[TextIO] = None, enabled: Optional[bool] = None,
                 interval: Optional[float] = None, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.label = label
        self.unit = unit
        self.count = 0
        self._stream = sys.stderr if stream is None else stream
        tty = bool(getattr(self._stream, 'isatty', lambda: False)())
        self._tty = tty
        self.enabled = tty if enabled is None else bool(enabled)
        self._interval = (0.1 if tty else 5.0) if interval is None else float(interval)
        self._clock = clock
        self._start = clock()
        self._last_draw = self._start
        self._closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was created."""
        return self._clock() - self._start

    @property
    def rate(self) -> float:
        """Items per second so far (0 before the first item)."""
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> Optional[float]:
        """Estimated seconds left, or None without a total or a rate."""
        rate = self.rate
        if self.total is None or rate <= 0:
            return None
        return max(self.total - self.count, 0) / rate

    def update(self, n: int = 1) -> None:
        """Record ``n`` more finished items and redraw when due."""
        self.count += n
        now = self._clock()
        if self.enabled and now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw(final=False)

    def close(self) -> None:
        """Draw the final state and end the line (once)."""
        if self.enabled and not self._closed:
            self._draw(final=True)
        self._closed = True

    def line(self) -> str:
        """The current status text."""
        head = f'{self.label} ' if self.label else ''
        if self.total:
            done = min(self.count / self.total, 1.0)
            filled = int(round(done * 24))
            parts = [f'{head}[{"#" * filled}{"." * (24 - filled)}] {self.count}/{self.total} {done:4.0%}']
        else:
            parts = [f'{head}{self.count}']
        parts.append(f'{self.rate:.1f} {self.unit}/s')
        eta = self.eta
        if eta is not None:
            parts.append(f'ETA {_clock_text(eta)}')
        parts.append(f'elapsed {_clock_text(self.elapsed)}')
        return '  '.join(parts)

    def _draw(self, final: bool) -> None:
        if self._tty:
            self._stream.write('\r\033[K' + self.line() + ('\n' if final else ''))
        else:
            self._stream.write(self.line() + '\n')
        self._stream.flush()

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f'{h}:{m:02d}:{s:02d}' if h else f'{m}:{s:02d}'
