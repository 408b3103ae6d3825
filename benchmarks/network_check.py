"""Quick held-out check of a trained AVSM checkpoint, with and without instance optimisation.

Usage: ``python benchmarks/network_check.py CHECKPOINT [--pairs 1000:1001,1002:1003] [--instance-opt 0,20]``.
Evaluation only: never tune on the held-out subjects 1000-1009. Prints one line per pair and setting
(mean label Dice, fold fraction, det J min, seconds end to end). The full 90-pair table is malf_accuracy.py's.
"""
import argparse
import time
from pathlib import Path

import avsm

MALF = Path(__file__).resolve().parents[2] / "shared" / "data" / "malf2012"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--pairs", default="1000:1001,1002:1003", help="fixed:moving subject ids")
    ap.add_argument("--instance-opt", default="0,20", help="instance-optimisation steps to compare")
    args = ap.parse_args()
    for pair in args.pairs.split(","):
        fixed, moving = pair.split(":")
        for steps in (int(s) for s in args.instance_opt.split(",")):
            tick = time.perf_counter()
            result = avsm.register(MALF / f"{fixed}_SS.nii.gz", MALF / f"{moving}_SS.nii.gz", method="avsm",
                                   model=args.checkpoint, instance_opt=steps, device="cpu",
                                   moving_labels=MALF / f"{moving}_glm.nii.gz", fixed_labels=MALF / f"{fixed}_glm.nii.gz")
            r = result.report
            print(f"{fixed}<-{moving} instance_opt={steps} dice {r['dice_mean']:.4f} folds {r['fold_fraction']:.2e} "
                  f"detJmin {r['det_jacobian_min']:.3f} {time.perf_counter() - tick:.1f} s", flush=True)


if __name__ == "__main__":
    main()
