"""How much Dice the working grid allows: vSVF optimisation at several working spacings, VALIDATION subjects only.

A network at working spacing s predicts its momentum on a grid of 2 s, as vSVF optimisation at spacing s does
(its ``map_resolution_factor`` is 2).
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark_data import (PAIR_COLUMNS, add_validation_arguments, print_table, register_every_pair,  # noqa: E402
                            require_malf2012, validation_subjects)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spacings", default="3,2", help="comma list of working spacings in mm")
    ap.add_argument("--sigmas", default="default",
                    help="';'-separated sigma-fraction sets; 'default' is vsvf-opt's own")
    add_validation_arguments(ap, threads=1)
    args = ap.parse_args(argv)
    subjects = validation_subjects(ap, args.subjects)
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

    import torch

    from avsm.optimisation.vsvf_opt import VSVFSettings

    torch.set_num_threads(args.threads)
    rows = []
    for spacing, kernel in itertools.product(spacings, kernels):
        settings = VSVFSettings() if kernel is None else dataclasses.replace(VSVFSettings(), sigma_fractions=kernel)
        sigmas = ", ".join(f"{x:g}" for x in settings.sigma_fractions)
        cells = register_every_pair(subjects, f"{spacing:g} mm sigmas {sigmas}", method="vsvf-opt",
                                    working_spacing=spacing, vsvf_settings=settings)
        rows.append(f"| {spacing:g} mm | {settings.map_resolution_factor * spacing:g} mm | {sigmas} {cells}")
    print_table(f"vsvf-opt on the directed pairs of subjects {', '.join(subjects)}, {args.threads} thread(s)",
                ["working spacing", "momentum grid", "sigma fractions", *PAIR_COLUMNS], rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
