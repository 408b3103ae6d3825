"""How much Dice the working grid allows: vSVF optimisation at several working spacings, VALIDATION subjects only.

A network at working spacing s predicts its momentum on a grid of 2 s, as vSVF optimisation at spacing s does.
Optimising each pair directly (``avsm.register(method="vsvf-opt", working_spacing=s)``, the shipped vsvf-opt
settings) estimates the best a network at that spacing could reach. ``--sigmas`` adds kernels: sets of
multi-Gaussian sigma fractions separated by ';' (e.g. the networks' default 0.05,0.1,0.15,0.2,0.25), each tried
at every spacing. Registers every directed pair among ``--subjects`` (default the validation subjects 1036, 1038,
1039); the held-out subjects 1000-1009 are refused.

Usage::

    python benchmarks/tuning/resolution_ceiling.py --spacings 3,2 --out benchmarks/tuning/resolution_ceiling.md
    python benchmarks/tuning/resolution_ceiling.py --spacings 3 --sigmas "default;0.05,0.1,0.15,0.2,0.25"
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spacings", default="3,2", help="comma list of working spacings in mm")
    ap.add_argument("--subjects", default="1036,1038,1039", help="validation subject ids (never 1000-1009)")
    ap.add_argument("--sigmas", default="default",
                    help="';'-separated sigma-fraction sets; 'default' is vsvf-opt's own")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the markdown table here too")
    args = ap.parse_args(argv)
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    from benchmark_data import held_out_among, malf_image, malf_labels, require_malf2012

    held_out = held_out_among(subjects)
    if held_out:
        ap.error(f"subjects {held_out} are the held-out evaluation set: never tune on them")
    spacings = [float(x) for x in args.spacings.split(",") if x.strip()]
    if not spacings or min(spacings) <= 0:
        ap.error(f"--spacings must list positive numbers (got '{args.spacings}')")
    try:
        kernels = [None if k.strip() == "default" else tuple(float(x) for x in k.split(","))
                   for k in args.sigmas.split(";") if k.strip()]
    except ValueError:
        ap.error(f"--sigmas must be 'default' or comma lists of numbers separated by ';' (got '{args.sigmas}')")
    require_malf2012()
    import dataclasses

    import numpy as np
    import torch

    import avsm
    from avsm.optimisation.vsvf_opt import VSVFSettings

    torch.set_num_threads(args.threads)
    rows = []
    for spacing, kernel in itertools.product(spacings, kernels):
        settings = VSVFSettings() if kernel is None else dataclasses.replace(VSVFSettings(), sigma_fractions=kernel)
        dice, detj_min, folds, seconds = [], [], [], []
        for fixed, moving in itertools.permutations(subjects, 2):
            tick = time.perf_counter()
            report = avsm.register(str(malf_image(fixed)), str(malf_image(moving)), method="vsvf-opt",
                                   working_spacing=spacing, vsvf_settings=settings, device="cpu",
                                   moving_labels=str(malf_labels(moving)), fixed_labels=str(malf_labels(fixed))).report
            seconds.append(time.perf_counter() - tick)
            dice.append(report["dice_mean"])
            detj_min.append(report["det_jacobian_min"])
            folds.append(report["fold_fraction"])
            print(f"{spacing} mm sigmas {settings.sigma_fractions} {fixed}<-{moving}: Dice {dice[-1]:.4f}", flush=True)
        sigmas = ", ".join(f"{x:g}" for x in settings.sigma_fractions)
        rows.append(f"| {spacing:g} mm | {2 * spacing:g} mm | {sigmas} | {len(dice)} | "
                    f"{np.mean(dice):.4f} ± {np.std(dice):.4f} | {min(detj_min):.3f} | {max(folds):.2e} | "
                    f"{np.mean(seconds):.1f} |")
    header = ("| working spacing | momentum grid | sigma fractions | pairs | mean Dice ± sd | det J min "
              "| max fold fraction | s / pair |")
    title = f"vsvf-opt on the directed pairs of subjects {', '.join(subjects)}, {args.threads} thread(s)"
    table = "\n".join([title, "",
                       header,
                       "|---|---|---|---|---|---|---|---|", *rows, ""])
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
