"""Progress reporting: a callable ``(stage, fraction, message)`` and the command line's three styles."""
from __future__ import annotations

import json
import sys
from typing import Callable, Optional, Protocol


class ProgressCallback(Protocol):
    def __call__(self, stage: str, fraction: float, message: str) -> None: ...


def silent(stage: str, fraction: float, message: str) -> None:
    """The 'none' style."""


class JsonLinesProgress:
    """One JSON object per line on a stream (stdout by default), for programs such as the Slicer module."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        record = {"event": "progress", "stage": stage, "fraction": round(float(fraction), 4), "message": message}
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


class BarProgress:
    """A tqdm bar on stderr over the whole run (0..100 %), its description the current stage."""

    def __init__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, bar_format="{desc:<28}{percentage:3.0f}%|{bar}| {elapsed}")

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        self.bar.set_description_str(f"{stage}: {message}"[:28])
        self.bar.n = min(100.0, round(100.0 * fraction, 1))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class StagedProgress:
    """Maps a stage's own 0..1 fraction into its slice of the overall 0..1 range."""

    def __init__(self, callback: Optional[Callable[[str, float, str], None]], weights: dict[str, float]):
        self.callback = callback or silent
        total = sum(weights.values())
        self.starts: dict[str, float] = {}
        self.spans: dict[str, float] = {}
        position = 0.0
        for stage, weight in weights.items():
            self.starts[stage] = position / total
            self.spans[stage] = weight / total
            position += weight
        self.reached = 0.0

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        """Report ``stage`` at ``fraction`` of its slice; the overall figure never goes back (a stage run again, as
        after a change of contrast is found, holds it where it was)."""
        start = self.starts.get(stage, 0.0)
        span = self.spans.get(stage, 0.0)
        self.reached = max(self.reached, start + span * min(max(fraction, 0.0), 1.0))
        self.callback(stage, self.reached, message)
