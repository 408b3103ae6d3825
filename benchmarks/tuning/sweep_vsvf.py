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

from pathlib import Path

import torch

import avsm
from avsm.losses import LNCCScale  # noqa: F401  (used by config files)
from avsm.optimisation import VSVFSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark_data import held_out_among, malf_image, malf_labels, require_malf2012  # noqa: E402


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
    held_out = held_out_among(subject for pair in pairs for subject in pair)
    if held_out:
        ap.error(f"subjects {held_out} are the held-out evaluation set: never tune on them")
    require_malf2012()
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
                fields = dict(cfg)
                spacing = fields.pop("working_spacing", 2.0)
                method = fields.pop("method", "vsvf-opt")
                settings = VSVFSettings(**fields)
                load = os.getloadavg()[0]
                cpu0 = time.process_time()
                r = avsm.register(str(malf_image(f)), str(malf_image(m)), method=method,
                                  moving_labels=str(malf_labels(m)), fixed_labels=str(malf_labels(f)),
                                  working_spacing=spacing, vsvf_settings=settings, device="cpu")
                rep = r.report
                cpu = time.process_time() - cpu0
                row = [name, pair, f"{rep['dice_mean']:.4f}", f"{rep['fold_fraction']:.2e}",
                       f"{rep['det_jacobian_min']:.3f}", f"{rep['det_jacobian_max']:.2f}",
                       f"{rep['timings']['total']:.1f}", f"{rep['timings'].get('vsvf', 0):.1f}", f"{cpu:.1f}", f"{load:.2f}",
                       repr(dict(fields, working_spacing=spacing))]
                writer.writerow(row)
                fh.flush()
                print(*row[:10], flush=True)


if __name__ == "__main__":
    main()
