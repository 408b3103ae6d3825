"""A stand-in for the `avsm` engine with a known answer, so the scene bridge can be tested
without torch: the transform is a translation followed by a smooth displacement field.

Used two ways: as the `avsm` module (`register()`), and as the `avsm register` command line
(`python fake_engine.py register FIXED MOVING -o OUT ... --progress json`). Environment switches
for the command line: FAKE_AVSM_SLEEP (seconds to wait before working, for Cancel),
FAKE_AVSM_FAIL (exit with that message on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

TRANSLATION_MM = (4.0, -3.0, 2.0)  # LPS, fixed -> moving
WAVE_MM = 2.5                       # amplitude of the displacement along x (LPS)


class AVSMError(ValueError):
    pass


def known_transform(fixed: sitk.Image) -> tuple[sitk.CompositeTransform, sitk.AffineTransform]:
    affine = sitk.AffineTransform(3)
    affine.SetTranslation(TRANSLATION_MM)
    size = fixed.GetSize()
    k = np.arange(size[2])[:, None, None]
    field = np.zeros((size[2], size[1], size[0], 3))
    field[..., 0] = WAVE_MM * np.sin(2 * np.pi * k / max(size[2] - 1, 1))
    displacement = sitk.GetImageFromArray(field, isVector=True)
    displacement.CopyInformation(fixed)
    # applied to a point: the displacement first, then the affine (ITK composite order)
    return sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(displacement)]), affine


@dataclass
class Result:
    warped: sitk.Image
    warped_labels: sitk.Image | None
    transform: sitk.Transform
    affine: sitk.AffineTransform
    inverse: sitk.Transform
    det_jacobian: sitk.Image
    folds: sitk.Image
    report: dict


def register(fixed, moving, method="vsvf-opt", moving_labels=None, fixed_labels=None, device="auto",
             progress=None, **unused) -> Result:
    if method not in ("affine", "vsvf-opt"):
        raise AVSMError(f"unknown method '{method}'")
    fixed, moving = (sitk.ReadImage(str(x)) if not isinstance(x, sitk.Image) else x for x in (fixed, moving))
    if progress:
        progress("deformable", 0.5, "fake engine at work")
    transform, affine = known_transform(fixed)
    warped = sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    labels = None
    if moving_labels is not None:
        moving_labels = moving_labels if isinstance(moving_labels, sitk.Image) else sitk.ReadImage(str(moving_labels))
        labels = sitk.Resample(moving_labels, fixed, transform, sitk.sitkNearestNeighbor, 0)
    det = sitk.Image(fixed.GetSize(), sitk.sitkFloat32) + 1.0
    det.CopyInformation(fixed)
    det_array = sitk.GetArrayFromImage(det)
    det_array[0, 0, 0] = -0.5  # one fold, so fold outputs are not trivially empty
    det_array[-1, -1, -1] = 1.8
    det = sitk.GetImageFromArray(det_array)
    det.CopyInformation(fixed)
    folds = sitk.Cast(det <= 0, sitk.sitkUInt8)
    report = {"method": method, "device": "cpu", "timings": {"total": 0.1}, "fold_count": 1,
              "fold_fraction": 1.0 / det_array.size, "det_jacobian_min": -0.5, "det_jacobian_max": 1.8,
              "version": "fake"}
    if labels is not None and fixed_labels is not None:
        report.update(dice_mean=0.5, dice_per_label={"1": 0.5})
    if progress:
        progress("done", 1.0, "fake engine finished")
    return Result(warped, labels, transform, affine, affine.GetInverse(),  # inverse unused by the bridge
                  det, folds, report)


def save(result: Result, outdir: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=outdir.parent))
    sitk.WriteImage(result.warped, str(staging / "warped.nii.gz"))
    sitk.WriteTransform(result.transform, str(staging / "transform.h5"))
    sitk.WriteTransform(result.affine, str(staging / "affine.tfm"))
    sitk.WriteImage(result.det_jacobian, str(staging / "jacobian.nii.gz"))
    sitk.WriteImage(result.folds, str(staging / "folds.nii.gz"))
    if result.warped_labels is not None:
        sitk.WriteImage(result.warped_labels, str(staging / "warped_labels.nii.gz"))
    (staging / "report.json").write_text(json.dumps(result.report))
    shutil.move(str(staging), str(outdir))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("fixed")
    parser.add_argument("moving")
    parser.add_argument("-o", dest="outdir", required=True)
    parser.add_argument("--method", default="vsvf-opt")
    parser.add_argument("--moving-labels")
    parser.add_argument("--fixed-labels")
    parser.add_argument("--progress", default="none")
    args, _ = parser.parse_known_args(argv)

    def progress(stage, fraction, message):
        print(json.dumps({"event": "progress", "stage": stage, "fraction": fraction, "message": message}), flush=True)

    progress("start", 0.0, f"device: cpu (pid {os.getpid()})")
    time.sleep(float(os.environ.get("FAKE_AVSM_SLEEP", "0")))
    if os.environ.get("FAKE_AVSM_FAIL"):
        print(os.environ["FAKE_AVSM_FAIL"], file=sys.stderr)
        return 2
    try:
        result = register(args.fixed, args.moving, args.method, args.moving_labels, args.fixed_labels, progress=progress)
    except AVSMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    save(result, Path(args.outdir))
    print(json.dumps({"event": "done", "outdir": args.outdir, "summary": "fake registration done"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
