"""Where the benchmarks and tuning scripts find the real data, and the subjects they must never tune on.

The data is ``../shared/data`` beside the repository (CI has it; a user's clone usually does not).
``AVSM_SHARED_DATA`` points at another copy of that folder; ``MALF2012_DIR`` at another malf2012 folder.
Import this module only after the thread-count environment variables are set: it loads ``avsm`` (torch).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from avsm.training.config import MALF_HELD_OUT

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVSM_SHARED_DATA", REPO.parent / "shared" / "data"))
MALF2012 = Path(os.environ.get("MALF2012_DIR", SHARED_DATA / "malf2012"))
OPEN_MS = SHARED_DATA / "open_ms_lesjak" / "cross_sectional_MNI"
HELD_OUT: tuple[str, ...] = MALF_HELD_OUT  # malf2012 1000-1009: evaluation only, never trained or tuned on


def malf_image(subject: str) -> Path:
    """The skull-stripped T1 of a malf2012 subject (1 mm, RAS-ish orientation as shipped)."""
    return MALF2012 / f"{subject}_SS.nii.gz"


def malf_labels(subject: str) -> Path:
    """The Neuromorphometrics label map of a malf2012 subject, on the grid of its image."""
    return MALF2012 / f"{subject}_glm.nii.gz"


def held_out_among(subjects: Iterable[str]) -> list[str]:
    """The held-out evaluation subjects among ``subjects``: a tuning script must refuse to run when not empty."""
    return sorted(set(HELD_OUT) & {str(s) for s in subjects})


def require_malf2012() -> None:
    """Raise a clear error when the malf2012 folder is missing, naming where it was looked for."""
    if not any(MALF2012.glob("*_SS.nii.gz")):
        raise SystemExit(f"malf2012 not found at {MALF2012}: put ../shared/data beside the repository, "
                         "or set AVSM_SHARED_DATA (the data folder) or MALF2012_DIR (the malf2012 folder)")
