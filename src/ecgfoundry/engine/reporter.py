"""A progress bar on an interactive terminal; silent otherwise (the JSONL log has it all)."""

from __future__ import annotations

import sys
import time
from typing import Any

from ecgfoundry.engine import distributed as dist


class Reporter:
    """Loss, samples/s and the last value of the monitored metric, per epoch."""

    def __init__(self, enabled: bool):
        self.bar, self.metric, self.start, self.seen = None, "", 0.0, 0
        if enabled and dist.is_main() and sys.stderr.isatty():
            from rich.progress import Progress as Bar

            self.bar = Bar(*Bar.get_default_columns(), "{task.fields[info]}", transient=True)
            self.bar.start()

    def epoch(self, title: str, steps: int) -> Any:
        self.start, self.seen = time.perf_counter(), 0
        return self.bar.add_task(title, total=steps, info="") if self.bar else None

    def update(self, task: Any, samples: int, loss: float) -> None:
        """One step of ``samples`` done."""
        self.seen += samples
        if self.bar is not None:
            rate = self.seen / max(time.perf_counter() - self.start, 1e-9)
            info = f"loss {loss:.4f}  {rate:.0f} samples/s  {self.metric}"
            self.bar.update(task, advance=1, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
