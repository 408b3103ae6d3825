"""Cross-contrast check: T1 of one open_ms_lesjak patient to the T2 and the FLAIR of another.

The cross_sectional_MNI images are skull-stripped, so each image's brain mask is its non-zero voxels;
the score is the Dice of the warped moving mask with the fixed mask (``avsm.metrics``, label 1). Pairs:
fixed T1 of patient A <- moving T2 / FLAIR of patient B, for (A, B) in (07, 19), (19, 26), (26, 07).
Methods, timings and det J exactly as ``malf_accuracy.py`` (same functions, same 2 threads), e.g.::

    python benchmarks/cross_contrast.py --methods affine,vsvf-opt,avsm,avsm-io,voxelmorph,syn,elastix \\
        --out benchmarks/results/cross_contrast.md

Data: open_ms_lesjak (CC BY 4.0, see ../shared/data/README.md); none of it is used for training.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import malf_accuracy as bench  # noqa: E402  (sets the thread counts before numpy/torch load)

import SimpleITK as sitk  # noqa: E402

from benchmark_data import OPEN_MS  # noqa: E402
PATIENT_PAIRS = (("07", "19"), ("19", "26"), ("26", "07"))
CONTRASTS = {"T1": "T1", "T2": "T2", "FLAIR": "FLAIR"}


def image_file(patient: str, contrast: str) -> Path:
    return OPEN_MS / f"patient{patient}" / f"{contrast}_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"


def register_subject(patient: str, contrast: str, folder: Path) -> str:
    """Register the image and its non-zero brain mask under an id that malf_accuracy's methods can read."""
    image = image_file(patient, contrast)
    mask = folder / f"mask_{patient}_{contrast}.nii.gz"
    if not mask.exists():
        sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(image)) > 0, sitk.sitkUInt8), str(mask))
    key = f"p{patient}_{contrast}"
    bench.EXTRA_SUBJECTS[key] = (str(image), str(mask))
    return key


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="affine,vsvf-opt,syn,elastix")
    ap.add_argument("--contrasts", default="T2,FLAIR", help="moving contrasts (fixed is always T1)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--avsm-model", default=None)
    ap.add_argument("--voxelmorph-model", default=None)
    ap.add_argument("--instance-opt", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--similarity", default="auto", help="the similarity of the avsm rows: auto, lncc or mi")
    args = ap.parse_args(argv)
    # malf_accuracy's methods read these option names
    for name in ("working_spacing", "vsvf_iterations", "vsvf_learning_rate", "vsvf_regularisation", "vsvf_time_steps",
                 "vsvf_map_resolution_factor", "vsvf_sigmas", "vsvf_sigma_weights", "vsvf_lncc"):
        setattr(args, name, None)
    if not OPEN_MS.exists():
        ap.exit(2, f"needs {OPEN_MS} (../shared/data beside the repository)\n")
    import torch

    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    summaries, all_rows = [], []
    with tempfile.TemporaryDirectory(prefix="cross_contrast_") as tmp:
        folder = Path(tmp)
        for contrast in [c for c in args.contrasts.split(",") if c]:
            rows = []
            for fixed_patient, moving_patient in PATIENT_PAIRS:
                fixed = register_subject(fixed_patient, "T1", folder)
                moving = register_subject(moving_patient, CONTRASTS[contrast], folder)
                for method in methods:
                    workdir = folder / f"{fixed}_{moving}"
                    os.makedirs(workdir, exist_ok=True)
                    row = {"method": method, "fixed": fixed, "moving": moving, "error": None}
                    try:
                        row.update(bench.run_method(method, fixed, moving, args, str(workdir)))
                    except Exception as exc:  # one failing method must not lose the others' numbers
                        row["error"] = f"{type(exc).__name__}: {exc}"
                    rows.append(row)
                    print(f"T1 {fixed} <- {contrast} {moving} {method:10s} "
                          + (f"FAILED {row['error']}" if row["error"] else
                             f"brain Dice {row['dice']:.4f} folds {row['fold_fraction']:.2e} {row['seconds']:.1f} s"),
                          flush=True)
            summaries.append(bench.markdown(bench.summarise(rows, methods),
                                            f"T1 -> {contrast}, open_ms_lesjak patients "
                                            f"{', '.join(f'{a}<-{b}' for a, b in PATIENT_PAIRS)}; brain-mask Dice; "
                                            f"{args.threads} threads; seconds end to end"))
            all_rows += rows
    text = "\n".join(summaries)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if any(r["error"] for r in all_rows) else 0


if __name__ == "__main__":
    sys.exit(main())
