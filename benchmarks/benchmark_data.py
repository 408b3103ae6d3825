"""Where the benchmarks and tuning scripts find the real data, and the subjects they must never tune on.

The data is ``../shared/data`` beside the repository (CI has it; a user's clone usually does not).
``AVSM_SHARED_DATA`` points at another copy of that folder; ``MALF2012_DIR`` at another malf2012 folder.
Import this module only after the thread-count environment variables are set: it loads ``avsm`` (torch).
"""
from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Iterable

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVSM_SHARED_DATA", REPO.parent / "shared" / "data"))
MALF2012 = Path(os.environ.get("MALF2012_DIR", SHARED_DATA / "malf2012"))
OPEN_MS = SHARED_DATA / "open_ms_lesjak" / "cross_sectional_MNI"
# malf2012 1000-1009: evaluation only, never trained or tuned on (the training configs' data.held_out)
HELD_OUT: tuple[str, ...] = tuple(str(i) for i in range(1000, 1010))


def malf_image(subject: str) -> Path:
    """The skull-stripped T1 of a malf2012 subject (1 mm, RAS-ish orientation as shipped)."""
    return MALF2012 / f"{subject}_SS.nii.gz"


def malf_labels(subject: str) -> Path:
    """The Neuromorphometrics label map of a malf2012 subject, on the grid of its image."""
    return MALF2012 / f"{subject}_glm.nii.gz"


def held_out_among(subjects: Iterable[str]) -> list[str]:
    """The held-out evaluation subjects among ``subjects``: a tuning script must refuse to run when not empty."""
    return sorted(set(HELD_OUT) & {str(s) for s in subjects})


def add_validation_arguments(parser: argparse.ArgumentParser, threads: int) -> None:
    """``--subjects`` (default the brain configs' validation subjects), ``--threads`` and ``--out``."""
    parser.add_argument("--subjects", default="1036,1038,1039", help="validation subject ids (never 1000-1009)")
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--out", default=None, help="write the markdown table here too")


def print_table(title: str, header: list[str], rows: list[str], out: str | None) -> None:
    """Print a markdown table (``title``, the ``header`` cells, the ``rows``); write it to ``out`` too if given."""
    table = "\n".join([title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows, ""])
    print("\n" + table)
    if out:
        Path(out).write_text(table)


def validation_subjects(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The comma list ``text`` of subject ids; exits through ``parser.error`` if it names a held-out subject."""
    subjects = [s.strip() for s in text.split(",") if s.strip()]
    held_out = held_out_among(subjects)
    if held_out:
        parser.error(f"subjects {held_out} are the held-out evaluation set: never tune on them")
    return subjects


PAIR_COLUMNS = ["pairs", "mean Dice ± sd", "det J min", "max fold fraction", "s / pair"]


def register_every_pair(subjects: list[str], label: str, **register_options) -> str:
    """Register every directed pair among ``subjects`` with ``avsm.register(**register_options)`` on the CPU,
    print one line per pair (after ``label``), and return the table cells of ``PAIR_COLUMNS``, from the leading
    ``|`` on: ``| pairs | mean Dice ± sd | det J min | max fold fraction | s / pair |``."""
    import numpy as np

    import avsm

    dice, detj_min, folds, seconds = [], [], [], []
    for fixed, moving in itertools.permutations(subjects, 2):
        tick = time.perf_counter()
        report = avsm.register(str(malf_image(fixed)), str(malf_image(moving)), device="cpu",
                               moving_labels=str(malf_labels(moving)), fixed_labels=str(malf_labels(fixed)),
                               **register_options).report
        seconds.append(time.perf_counter() - tick)
        dice.append(report["dice_mean"])
        detj_min.append(report["det_jacobian_min"])
        folds.append(report["fold_fraction"])
        print(f"{label} {fixed}<-{moving}: Dice {dice[-1]:.4f}", flush=True)
    return (f"| {len(dice)} | {np.mean(dice):.4f} ± {np.std(dice):.4f} | {min(detj_min):.3f} | {max(folds):.2e} "
            f"| {np.mean(seconds):.1f} |")


def require_malf2012() -> None:
    """Raise a clear error when the malf2012 folder is missing, naming where it was looked for."""
    if not any(MALF2012.glob("*_SS.nii.gz")):
        raise SystemExit(f"malf2012 not found at {MALF2012}: put ../shared/data beside the repository, "
                         "or set AVSM_SHARED_DATA (the data folder) or MALF2012_DIR (the malf2012 folder)")
