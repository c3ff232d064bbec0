"""Live progress of a sweep's phases, in the README's words.

On a terminal, one rich progress bar per running phase ("[mnist p=100] adversarial ·
phase 1, random labels"): seeds finished of all, the furthest seed's step, seed-steps
per second, time elapsed, and the time left where the step cap bounds it. Elsewhere
(batch jobs, CI logs) the same facts as plain lines, at most one per phase every
`interval` seconds, and one when the phase ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _rate(x: float) -> str:
    return f"{x / 1e6:.1f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


class PhaseClock:
    """Rates and the time left of one phase, from its chunk callbacks."""

    def __init__(self, max_steps: int, clock: Callable[[], float]):
        self.max_steps, self.clock = max_steps, clock
        self.t0 = clock()
        self.first: tuple[float, int, int] | None = None  # (time, step, seed_steps) at the first callback:
        # rates are measured from there, past the compile and the steps a resumed phase had done

    def facts(self, n_done: int, n: int, step: int, seed_steps: int) -> str:
        now = self.clock()
        if self.first is None:
            self.first = (now, step, seed_steps)
        t1, step1, seed_steps1 = self.first
        parts = [f"{n_done}/{n} seeds done", f"step {step:,} of at most {self.max_steps:,}"]
        if now > t1 and seed_steps > seed_steps1:
            parts.append(f"{_rate((seed_steps - seed_steps1) / (now - t1))} seed-steps/s")
        parts.append(f"{_duration(now - self.t0)} elapsed")
        step_rate = (step - step1) / (now - t1) if now > t1 else 0.0
        if n_done < n and step_rate > 0:
            parts.append(f"≤ {_duration((self.max_steps - step) / step_rate)} left")
        return ", ".join(parts)


class Progress:
    """`phase(title, max_steps)` gives the callback `train` calls after each chunk."""

    def __init__(self, quiet: bool, tty: bool | None = None, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval, self.clock = interval, clock
        self._bars = None

    def _rich(self):
        if self._bars is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as Bars

            self._bars = Bars(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                              TextColumn("seeds  {task.fields[facts]}"),
                              console=Console(file=self.stream), transient=False)
            self._bars.start()
        return self._bars

    def phase(self, title: str, max_steps: int) -> Callable[[int, int, int, int], None]:
        if self.quiet:
            return lambda *args: None
        clock, last = PhaseClock(max_steps, self.clock), [-float("inf")]
        task = []

        def update(n_done: int, n: int, step: int, seed_steps: int) -> None:
            facts = clock.facts(n_done, n, step, seed_steps)
            finished = n_done == n
            if self.tty:
                bars = self._rich()
                if not task:
                    from rich.markup import escape  # "[mnist p=10]" is not a style

                    task.append(bars.add_task(escape(title), total=n, facts=""))
                bars.update(task[0], completed=n_done, facts=facts.split(", ", 1)[1])
                if finished:  # the bar gives way to one line that stays
                    bars.remove_task(task[0])
                    bars.console.print(f"{title}: {facts}", highlight=False, markup=False)
                return
            now = self.clock()
            if finished or now - last[0] >= self.interval:
                print(f"{title}: {facts}", file=self.stream, flush=True)
                last[0] = now

        return update

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
