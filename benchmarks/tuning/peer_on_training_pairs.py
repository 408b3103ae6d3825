"""A peer (Greedy) on TRAINING pairs of malf2012, as the reference that tuning aims at (1000-1009 are held out).

Usage: python benchmarks/tuning/peer_on_training_pairs.py OUT.csv [--pairs 1010:1011,1014:1015] [--threads 1]
Greedy runs exactly as in ``benchmarks/malf_accuracy.py`` (its documented brain settings, labels resliced with
``LABEL 0.2vox``); the labels are also resliced by nearest neighbour, to show what the label interpolation is worth.
Rows already in OUT.csv are skipped.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import malf_accuracy  # noqa: E402  (fixes the thread count from --threads before ITK loads)
from benchmark_data import held_out_among  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--pairs", default="1010:1011")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    malf_accuracy.THREADS = args.threads  # Greedy's -threads
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    held_out = held_out_among(subject for pair in pairs for subject in pair)
    if held_out:
        ap.error(f"subjects {held_out} are the held-out evaluation set: never tune on them")
    import SimpleITK as sitk
    from picsl_greedy import Greedy3D

    done = set()
    if os.path.exists(args.out):
        with open(args.out) as fh:
            done = {r["pair"] for r in csv.DictReader(fh)}
    new = not os.path.exists(args.out)
    with open(args.out, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["method", "pair", "dice_label_0.2vox", "dice_nearest", "fold_fraction", "seconds"])
        for f, m in pairs:
            if f"{f}<-{m}" in done:
                continue
            work = tempfile.mkdtemp()
            row = malf_accuracy.run_greedy(f, m, args, work)
            out = os.path.join(work, "greedy")
            Greedy3D().execute(f"-d 3 -threads {args.threads} -rf {malf_accuracy.image_path(f)} -ri NN "
                               f"-rm {malf_accuracy.label_path(m)} {out}/nearest.nii.gz -r {out}/warp.nii.gz {out}/affine.mat")
            nearest = malf_accuracy.dice_mean(sitk.GetArrayFromImage(sitk.ReadImage(f"{out}/nearest.nii.gz")),
                                              sitk.GetArrayFromImage(sitk.ReadImage(malf_accuracy.label_path(f))))
            writer.writerow(["greedy", f"{f}<-{m}", f"{row['dice']:.4f}", f"{nearest:.4f}", f"{row['fold_fraction']:.2e}",
                             f"{row['seconds']:.0f}"])
            fh.flush()


if __name__ == "__main__":
    main()
