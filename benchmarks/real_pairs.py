"""Real whole-head scans against their reference transforms: registration error in mm.

open_ms_lesjak ``longitudinal_raw/patient12``: raw clinical T1W, T2W and FLAIR of one patient at two studies
(anisotropic, e.g. 0.72 x 0.72 x 3 mm, oblique, defaced, not skull-stripped), with the dataset's reference
transforms (each study's T1W and T2W to its FLAIR; each FLAIR to a common space). Pairs, fixed <- moving:

* within a study, ``studyS_FLAIR <- studyS_T1W`` and ``studyS_FLAIR <- studyS_T2W`` (a change of contrast; the
  scans are close in scanner space, but their fields of view differ, so the centre-of-mass start is off);
* across the studies, ``study1_FLAIR <- study2_FLAIR`` and ``study1_FLAIR <- study2_T1W`` (another day: the
  head moved, about 19 mm and a few degrees).

The reference map fixed -> moving is built from the dataset's ITK transforms; their direction (which points
each one maps) is checked on the data by normalised mutual information before use (``reference_direction``). The
score of a method is the distance between where its full transform (affine and deformation) and the reference
send each fixed head voxel (Otsu foreground of the fixed scan, 20,000 seeded voxels): mean and 95th percentile,
mm. Methods as in ``malf_accuracy.py`` plus ``ants-affine``; ``--similarity`` sets the avsm rows' similarity::

    python benchmarks/real_pairs.py --methods affine,fast,default,ants-affine --similarity mi --threads 2 \\
        --out benchmarks/results/real_pairs.md

Data: open_ms_lesjak (CC BY 4.0, ../shared/data/README.md); none of it is used for training or tuning.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import malf_accuracy  # noqa: E402,F401  (imported for its side effect: the thread counts, set before numpy/torch load)

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from benchmark_data import SHARED_DATA  # noqa: E402

PATIENT = SHARED_DATA / "open_ms_lesjak" / "longitudinal_raw" / "patient12"
PAIRS = (("study1_FLAIR", "study1_T1W"), ("study1_FLAIR", "study1_T2W"), ("study2_FLAIR", "study2_T1W"),
         ("study2_FLAIR", "study2_T2W"), ("study1_FLAIR", "study2_FLAIR"), ("study1_FLAIR", "study2_T1W"))
SAMPLES = 20_000


def scan(name: str) -> Path:
    return PATIENT / f"{name}.nii.gz"


def dataset_transform(name: str) -> sitk.Transform:
    """``studyS_T1W``/``studyS_T2W``: its intra-study transform to the FLAIR; ``studyS_FLAIR``: to common space."""
    study, contrast = name.split("_")
    suffix = "to_common_space" if contrast == "FLAIR" else "intrastudy_to_FLAIR"
    return sitk.ReadTransform(str(PATIENT / f"{study}_{contrast}_{suffix}.txt"))


def nmi(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Normalised mutual information (H(a) + H(b)) / H(a, b) of two intensity arrays."""
    joint, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins)
    p = joint / joint.sum()

    def entropy(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (entropy(p.sum(axis=0)) + entropy(p.sum(axis=1))) / entropy(p)


def resampled_nmi(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    """NMI of ``fixed`` and ``moving`` pulled back through ``transform`` (fixed -> moving points), where both are > 0."""
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    values = sitk.GetArrayFromImage(sitk.Cast(fixed, sitk.sitkFloat32))
    inside = (warped > 0) & (values > 0)
    return nmi(values[inside], warped[inside])


def better_aligning(fixed: sitk.Image, moving: sitk.Image, candidates: list[sitk.Transform]) -> sitk.Transform:
    """The candidate fixed -> moving map that aligns ``moving`` onto ``fixed`` best (highest NMI)."""
    return max(candidates, key=lambda transform: resampled_nmi(fixed, moving, transform))


def reference_map(fixed_name: str, moving_name: str) -> sitk.Transform:
    """The dataset's fixed -> moving map: an intra-study transform (or its inverse), or the two studies' FLAIR ->
    common space transforms composed (both read the same way round, the way that aligns the two FLAIRs), then the
    moving study's intra-study transform when the moving scan is not its FLAIR."""
    fixed, moving = sitk.ReadImage(str(scan(fixed_name))), sitk.ReadImage(str(scan(moving_name)))
    fixed_study, moving_study = fixed_name.split("_")[0], moving_name.split("_")[0]
    if fixed_study == moving_study:
        transform = dataset_transform(moving_name)
        return better_aligning(fixed, moving, [transform, transform.GetInverse()])
    moving_flair = sitk.ReadImage(str(scan(f"{moving_study}_FLAIR")))
    to_fixed, to_moving = dataset_transform(fixed_name), dataset_transform(f"{moving_study}_FLAIR")
    # CompositeTransform applies its last transform first
    flair_map = better_aligning(fixed, moving_flair, [sitk.CompositeTransform([to_moving, to_fixed.GetInverse()]),
                                                      sitk.CompositeTransform([to_moving.GetInverse(), to_fixed])])
    if moving_name.endswith("FLAIR"):
        return flair_map
    intra = dataset_transform(moving_name)
    intra = better_aligning(moving_flair, moving, [intra, intra.GetInverse()])
    return sitk.CompositeTransform([intra, flair_map])


def head_points(fixed: sitk.Image, count: int = SAMPLES) -> np.ndarray:
    """``count`` seeded physical points (n x 3, LPS mm) of the fixed scan's Otsu foreground."""
    mask = sitk.GetArrayFromImage(sitk.OtsuThreshold(fixed, 0, 1))
    index = np.argwhere(mask > 0)[:, ::-1]  # (x, y, z)
    chosen = index[np.random.default_rng(0).choice(len(index), min(count, len(index)), replace=False)]
    return np.array([fixed.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in chosen])


def map_error(found: sitk.Transform, reference: sitk.Transform, points: np.ndarray) -> tuple[float, float]:
    """Mean and 95th percentile distance (mm) between where ``found`` and ``reference`` send ``points``."""
    distance = [np.linalg.norm(np.subtract(found.TransformPoint(p), reference.TransformPoint(p)))
                for p in map(tuple, points)]
    return float(np.mean(distance)), float(np.percentile(distance, 95))


def run_avsm(method: str, fixed: str, moving: str, args) -> tuple[sitk.Transform, float]:
    import avsm

    from avsm.methods import PRESET_NAMES

    choice = {"preset": method} if method in PRESET_NAMES else {"method": method}
    tick = time.perf_counter()
    result = avsm.register(fixed, moving, device="cpu", similarity=args.similarity, **choice)
    return result.transform, time.perf_counter() - tick


def run_ants_affine(fixed: str, moving: str, workdir: str) -> tuple[sitk.Transform, float]:
    """antspyx ``type_of_transform="Affine"`` (centre-of-mass start, mutual information); its forward transform
    file is an ITK fixed -> moving map."""
    import ants

    tick = time.perf_counter()
    registration = ants.registration(ants.image_read(fixed), ants.image_read(moving), type_of_transform="Affine",
                                     outprefix=os.path.join(workdir, "ants_"))
    seconds = time.perf_counter() - tick
    return sitk.ReadTransform(registration["fwdtransforms"][0]), seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="affine,fast,default,ants-affine")
    ap.add_argument("--similarity", default="auto", help="the avsm rows' similarity: auto, lncc or mi")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="markdown table")
    args = ap.parse_args(argv)
    if not PATIENT.exists():
        ap.exit(2, f"needs {PATIENT} (../shared/data beside the repository, or AVSM_SHARED_DATA)\n")
    import torch

    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    rows = []
    for fixed_name, moving_name in PAIRS:
        fixed_path, moving_path = str(scan(fixed_name)), str(scan(moving_name))
        reference = reference_map(fixed_name, moving_name)
        points = head_points(sitk.ReadImage(fixed_path))
        identity_error = map_error(sitk.Transform(), reference, points)
        cells = [f"{identity_error[0]:.1f}"]
        for method in methods:
            with tempfile.TemporaryDirectory() as workdir:
                transform, seconds = (run_ants_affine(fixed_path, moving_path, workdir) if method == "ants-affine"
                                      else run_avsm(method, fixed_path, moving_path, args))
            mean, p95 = map_error(transform, reference, points)
            cells.append(f"{mean:.2f} / {p95:.2f} ({seconds:.0f} s)")
            print(f"{fixed_name} <- {moving_name} {method:12s} error mean {mean:.2f} mm, p95 {p95:.2f} mm, "
                  f"{seconds:.1f} s", flush=True)
        rows.append(f"| {fixed_name} <- {moving_name} | " + " | ".join(cells) + " |")
    header = (f"open_ms_lesjak patient12, raw whole-head scans; error against the dataset's reference transforms "
              f"over {SAMPLES} fixed head voxels, mean / 95th percentile mm (seconds); {args.threads} thread(s); "
              f"avsm rows with similarity {args.similarity}\n\n"
              f"| pair (fixed <- moving) | identity (scanner space) | " + " | ".join(methods) + " |\n"
              + "|---" * (len(methods) + 2) + "|\n")
    table = header + "\n".join(rows) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
