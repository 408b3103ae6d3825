"""Test-time step counts of an AVSM (or VoxelMorph) model, chosen on the VALIDATION subjects of its training run.

Registers every directed pair among ``--subjects`` (default 1036, 1038, 1039: the ``validation_count = 3``
subjects of the brain configs, never trained on) at native resolution with ``avsm.register(method=--method)``
for each combination of ``--affine-steps`` and ``--vsvf-steps``, and prints mean label Dice, det J min and
the fold fraction per combination. The held-out evaluation subjects 1000-1009 are refused.

Usage::

    python benchmarks/tuning/network_steps.py --model brain_avsm_cpu_3mm_dice --vsvf-steps 2,3,4
    python benchmarks/tuning/network_steps.py --model runs/x/model.pt --affine-steps 5,7 --vsvf-steps 3 --out steps.md
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def counts(text: str) -> list:
    """'2,3' -> [2, 3]; '' -> [None] (the model's own count)."""
    return [int(x) for x in text.split(",") if x.strip()] or [None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="avsm", choices=("avsm", "voxelmorph"))
    ap.add_argument("--model", default=None, help="model name or checkpoint (default: the bundled one of --method)")
    ap.add_argument("--subjects", default="1036,1038,1039", help="validation subject ids (never 1000-1009)")
    ap.add_argument("--affine-steps", default="", help="comma list (default: the model's)")
    ap.add_argument("--vsvf-steps", default="2,3", help="comma list (avsm only)")
    ap.add_argument("--affine-refine", default="",
                    help="comma list of affine-refinement iterations (default: the engine's, 30; 0 = off)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the markdown table here too")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    import avsm
    from benchmark_data import held_out_among, malf_image, malf_labels, require_malf2012

    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    held_out = held_out_among(subjects)
    if held_out:
        ap.error(f"subjects {held_out} are the held-out evaluation set: never tune on them")
    require_malf2012()
    torch.set_num_threads(args.threads)
    rows = []
    vsvf_counts = counts(args.vsvf_steps) if args.method == "avsm" else [None]
    for affine_steps, vsvf_steps, refine in itertools.product(counts(args.affine_steps), vsvf_counts,
                                                               counts(args.affine_refine)):
        dice, detj_min, folds, seconds = [], [], [], []
        for fixed, moving in itertools.permutations(subjects, 2):
            tick = time.perf_counter()
            result = avsm.register(str(malf_image(fixed)), str(malf_image(moving)), method=args.method,
                                   model=args.model, affine_steps=affine_steps, vsvf_steps=vsvf_steps, device="cpu",
                                   affine_refine=refine,
                                   moving_labels=str(malf_labels(moving)),
                                   fixed_labels=str(malf_labels(fixed)))
            seconds.append(time.perf_counter() - tick)
            rep = result.report
            dice.append(rep["dice_mean"])
            detj_min.append(rep["det_jacobian_min"])
            folds.append(rep["fold_fraction"])
            print(f"affine {affine_steps} vsvf {vsvf_steps} refine {refine} {fixed}<-{moving}: Dice {dice[-1]:.4f}", flush=True)
        rows.append(f"| {affine_steps or 'model'} | {vsvf_steps or 'model'} | {'engine' if refine is None else refine} "
                    f"| {len(dice)} | {np.mean(dice):.4f} ± "
                    f"{np.std(dice):.4f} | {min(detj_min):.3f} | {max(folds):.2e} | {np.mean(seconds):.1f} |")
    table = "\n".join([f"validation subjects {', '.join(subjects)}; {args.method} model {args.model or 'bundled'}", "",
                       "| affine steps | vSVF steps | affine refinement | pairs | mean Dice ± sd | det J min | max fold fraction | s / pair |",
                       "|---|---|---|---|---|---|---|---|", *rows, ""])
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
