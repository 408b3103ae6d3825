"""Sweep vsvf-opt settings on TRAINING pairs of malf2012 (subjects 1010-1039 only; 1000-1009 are held out).

Usage: python benchmarks/tuning/sweep_vsvf.py CONFIGS.py OUT.csv [--pairs 1010:1011,1012:1013]
CONFIGS.py defines CONFIGS = {name: dict(working_spacing=..., **VSVFSettings fields)}. Rows already in OUT.csv
(same config name and pair) are skipped, so a sweep can be resumed or extended.
"""
from __future__ import annotations

import argparse
import csv
import os
import runpy
import sys
import time

import torch

import avsm
from avsm.losses import LNCCScale  # noqa: F401  (used by config files)
from avsm.optimisation import VSVFSettings

DATA = "/work/shared/data/malf2012"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("configs")
    ap.add_argument("out")
    ap.add_argument("--pairs", default="1010:1011")
    ap.add_argument("--only", default=None, help="comma separated config names")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 by default so that process CPU time is a contention-proof cost measure")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = runpy.run_path(args.configs)["CONFIGS"]
    if args.only:
        configs = {k: configs[k] for k in args.only.split(",")}
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    for f, m in pairs:
        assert int(f) >= 1010 and int(m) >= 1010, "held-out subjects 1000-1009 must not be used for tuning"
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as fh:
            done = {(r["config"], r["pair"]) for r in csv.DictReader(fh)}
    new = not os.path.exists(args.out)
    with open(args.out, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["config", "pair", "dice", "fold_fraction", "detj_min", "detj_max", "total_s", "vsvf_s", "cpu_s",
                             "load1", "settings"])
        for name, cfg in configs.items():
            for f, m in pairs:
                pair = f"{f}<-{m}"
                if (name, pair) in done:
                    continue
                cfg = dict(cfg)
                spacing = cfg.pop("working_spacing", 2.0)
                method = cfg.pop("method", "vsvf-opt")
                settings = VSVFSettings(**cfg)
                load = os.getloadavg()[0]
                cpu0 = time.process_time()
                r = avsm.register(f"{DATA}/{f}_SS.nii.gz", f"{DATA}/{m}_SS.nii.gz", method=method,
                                  moving_labels=f"{DATA}/{m}_glm.nii.gz", fixed_labels=f"{DATA}/{f}_glm.nii.gz",
                                  working_spacing=spacing, vsvf_settings=settings, device="cpu")
                rep = r.report
                cpu = time.process_time() - cpu0
                row = [name, pair, f"{rep['dice_mean']:.4f}", f"{rep['fold_fraction']:.2e}",
                       f"{rep['det_jacobian_min']:.3f}", f"{rep['det_jacobian_max']:.2f}",
                       f"{rep['timings']['total']:.1f}", f"{rep['timings'].get('vsvf', 0):.1f}", f"{cpu:.1f}", f"{load:.2f}",
                       repr(dict(cfg, working_spacing=spacing))]
                writer.writerow(row)
                fh.flush()
                print(*row[:10], flush=True)


if __name__ == "__main__":
    main()
