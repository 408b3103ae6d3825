"""A body CT in Hounsfield units against a copy of itself under a known rigid motion: what each preset and the affine
method make of a scan outside the networks' domain (README, "Limits").

Usage: python benchmarks/tuning/ct_slab.py OUT.md [--threads 2]
The CT of ``../shared/data/totalsegmentator_ct_example`` (3 mm voxels, 30 slices, -1100..1207 HU, x and y axes
flipped) is the fixed image; the moving image is the same CT moved by 6 degrees about z and (5, -4, 2) mm, air
(-1024 HU) filled in. "affine error" is the mean distance (mm) between the registration's affine and the truth over
a grid of fixed points; Dice is over its organ labels, the moved labels warped back.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark_data import SHARED_DATA  # noqa: E402

FOLDER = SHARED_DATA / "totalsegmentator_ct_example"
RUNS = {"no registration (centre of mass)": {"method": "affine", "affine_iterations": 0},
        "affine method": {"method": "affine"}, "fast": {"preset": "fast"}, "default": {"preset": "default"},
        "accurate": {"preset": "accurate"}, "fast, --affine-refine 90": {"preset": "fast", "affine_refine": 90}}


def moved_ct(folder: Path = FOLDER) -> tuple[sitk.Image, sitk.Image, sitk.Image, sitk.Image, sitk.Transform]:
    """(fixed CT, moving CT, fixed labels, moving labels, truth): the truth maps fixed to moving points (LPS mm)."""
    fixed = sitk.ReadImage(str(folder / "example_ct_sm.nii.gz"))
    labels = sitk.ReadImage(str(folder / "example_seg.nii.gz"))
    centre = fixed.TransformContinuousIndexToPhysicalPoint([n / 2 for n in fixed.GetSize()])
    truth = sitk.Euler3DTransform(centre, 0.0, 0.0, np.radians(6.0), (5.0, -4.0, 2.0))
    moving = sitk.Resample(fixed, fixed, truth.GetInverse(), sitk.sitkLinear, -1024.0)
    moving_labels = sitk.Resample(labels, fixed, truth.GetInverse(), sitk.sitkNearestNeighbor, 0)
    return fixed, moving, labels, moving_labels, truth


def affine_error_mm(report: dict, truth: sitk.Transform, fixed: sitk.Image) -> float:
    """Mean distance between the report's affine and ``truth`` over a grid of fixed voxels (every 20th in-plane,
    every 10th slice)."""
    matrix = np.array(report["affine_matrix"])
    size = fixed.GetSize()
    points = [np.array(fixed.TransformIndexToPhysicalPoint((i, j, k))) for i in range(20, size[0], 20)
              for j in range(20, size[1], 20) for k in range(5, size[2], 10)]
    return float(np.mean([np.linalg.norm(matrix[:3, :3] @ p + matrix[:3, 3] - np.array(truth.TransformPoint(p)))
                          for p in points]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import avsm

    fixed, moving, labels, moving_labels, truth = moved_ct()
    lines = ["| run | affine error (mm) | label Dice | networks' deformation kept | similarity |", "|---|---|---|---|---|"]
    for name, options in RUNS.items():
        report = avsm.register(fixed, moving, device="cpu", fixed_labels=labels, moving_labels=moving_labels,
                               **options).report
        kept = (report.get("network") or {}).get("deformation_kept")
        lines.append(f"| {name} | {affine_error_mm(report, truth, fixed):.2f} | {report['dice_mean']:.3f} | "
                     f"{'' if kept is None else kept} | {report['similarity']['used']} |")
        print(lines[-1], flush=True)
    Path(args.out).write_text(
        "# A body CT against a moved copy of itself\n\n"
        f"`python benchmarks/tuning/ct_slab.py {args.out} --threads {args.threads}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
