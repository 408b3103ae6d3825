"""Test-time step counts of an AVSM (or VoxelMorph) model, chosen on the VALIDATION subjects of its training run.

Registers every directed pair among ``--subjects`` (default 1036, 1038, 1039: the ``validation_count = 3``
subjects of the brain configs, never trained on) at native resolution with ``avsm.register(method=--method)``
for each combination of ``--network-affine-steps``, ``--network-vsvf-steps``, ``--affine-refine`` and
``--working-spacing`` (the test-time working grid), and prints mean label Dice, det J min and the fold fraction
per combination. The held-out evaluation subjects 1000-1009 are refused.

Usage::

    python benchmarks/tuning/network_steps.py --model brain_avsm_cpu_3mm_long --network-vsvf-steps 2,3,4
    python benchmarks/tuning/network_steps.py --model runs/x/model.pt --network-affine-steps 5,7 \\
        --network-vsvf-steps 3 --out steps.md
    python benchmarks/tuning/network_steps.py --network-vsvf-steps 3 --working-spacing 2,2.5,3 --threads 1
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark_data import (PAIR_COLUMNS, add_validation_arguments, print_table, register_every_pair,  # noqa: E402
                            require_malf2012, validation_subjects)


def counts(text: str, kind=int) -> list:
    """'2,3' -> [2, 3]; '' -> [None] (the model's own count)."""
    return [kind(x) for x in text.split(",") if x.strip()] or [None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="avsm", choices=("avsm", "voxelmorph"))
    ap.add_argument("--model", default=None, help="model name or checkpoint (default: the bundled one of --method)")
    ap.add_argument("--network-affine-steps", default="", help="comma list (default: the model's)")
    ap.add_argument("--network-vsvf-steps", default="2,3", help="comma list (avsm only)")
    ap.add_argument("--affine-refine", default="",
                    help="comma list of affine-refinement iterations (default: the engine's, 30; 0 = off)")
    ap.add_argument("--working-spacing", default="",
                    help="comma list of test-time working spacings in mm (default: the model's)")
    add_validation_arguments(ap, threads=2)
    args = ap.parse_args(argv)
    import torch

    subjects = validation_subjects(ap, args.subjects)
    require_malf2012()
    torch.set_num_threads(args.threads)
    rows = []
    vsvf_counts = counts(args.network_vsvf_steps) if args.method == "avsm" else [None]
    for affine_steps, vsvf_steps, refine, spacing in itertools.product(
            counts(args.network_affine_steps), vsvf_counts, counts(args.affine_refine),
            counts(args.working_spacing, float)):
        cells = register_every_pair(subjects, f"affine {affine_steps} vsvf {vsvf_steps} refine {refine} "
                                    f"spacing {spacing}", method=args.method, model=args.model,
                                    network_affine_steps=affine_steps, network_vsvf_steps=vsvf_steps,
                                    affine_refine=refine, working_spacing=spacing)
        rows.append(f"| {affine_steps or 'model'} | {vsvf_steps or 'model'} | "
                    f"{'engine' if refine is None else refine} | {spacing or 'model'} {cells}")
    print_table(f"validation subjects {', '.join(subjects)}; {args.method} model {args.model or 'bundled'}; "
                f"{args.threads} thread(s)",
                ["affine steps", "vSVF steps", "affine refinement", "working spacing (mm)", *PAIR_COLUMNS],
                rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
