"""Where the seconds of one registration go: import, reading and pre-processing, each network stage, instance
optimisation, outputs in memory and the files written, in fresh processes (cold), medians over runs.

Each run is a new Python process (``--threads`` torch/ITK threads) that imports avsm, calls ``avsm.register``
with the given options and saves the outputs to a temporary folder; the stage times come from the report's
``timings`` (and the network's own), import and save are timed around them. Options are ``avsm.register``
keyword arguments as JSON, so the same command profiles any method, preset or older version of the engine
(put that version first on ``PYTHONPATH``).

Usage::

    python benchmarks/stage_profile.py --label "default preset" --runs 3 \\
        --fixed F.nii.gz --moving M.nii.gz --options '{"preset": "default"}' --out benchmarks/results/profile.md
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, sys, tempfile, time
start = time.perf_counter()
import torch
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
import avsm
from avsm import register
imported = time.perf_counter()
fixed, moving, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
result = register(fixed, moving, device="cpu", **options)
registered = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    result.save(os.path.join(folder, "out"))
saved = time.perf_counter()
stages = {"import": imported - start}
for name, seconds in result.report["timings"].items():
    if name == "network":
        stages.update((f"network: {k}", v) for k, v in result.report["network"]["timings"].items())
    elif name != "total":
        stages[name] = seconds
stages["save files"] = saved - registered
stages["total (process)"] = saved - start
print(json.dumps({"stages": stages, "dice": result.report.get("dice_mean")}))
"""


def profile(fixed: str, moving: str, options: dict, runs: int, threads: int) -> dict[str, list[float]]:
    """Stage name -> seconds of each run (fresh processes)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads))
    times: dict[str, list[float]] = {}
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", CHILD, fixed, moving, json.dumps(options)], env=env, check=True,
                              capture_output=True, text=True)
        record = json.loads(done.stdout.strip().splitlines()[-1])
        for name, seconds in record["stages"].items():
            times.setdefault(name, []).append(seconds)
    return times


def table(label: str, times: dict[str, list[float]]) -> str:
    lines = [f"### {label}", "", "| stage | median s | min s | max s |", "|---|---|---|---|"]
    for name, values in times.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixed", required=True)
    parser.add_argument("--moving", required=True)
    parser.add_argument("--options", default="{}", help="avsm.register keyword arguments as JSON")
    parser.add_argument("--label", default=None, help="table title (default: the options)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    options = json.loads(args.options)
    text = table(f"{args.label or args.options} ({args.runs} fresh processes, {args.threads} threads)",
                 profile(args.fixed, args.moving, options, args.runs, args.threads))
    print(text)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
