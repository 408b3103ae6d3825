"""The affine method's full-resolution polish after local correlation, kept only where it agrees with the
working-grid affine (``avsm.optimisation.affine_polish.AGREEMENT_MM``): what the limit was chosen from, on pairs of
none of the benchmark tables and no held-out malf2012 subject.

Usage: python benchmarks/tuning/polish_agreement.py OUT.md [--threads 1]
The affine method with local correlation (``--similarity lncc``) never polished, always polished and with the
agreement rule, on the ICBM T1 template under known warps 2-3 (one anatomy; the tables use warps 0-1), the
synthetic whole-head T1 pairs 4-7 of ``whole_head.py`` (its tables use pairs 0-3) and four pairs of malf2012
training subjects. Label Dice as in ``whole_head.py`` and ``malf_accuracy.py``; "move" is the root mean square
distance (mm) by which the whole polish (30 steps) moves the sampled fixed voxels. Rows go to
``<OUT stem>_rows.csv`` as they come; rows already there are kept.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pitch_starts  # noqa: E402
import row_log  # noqa: E402
import whole_head  # noqa: E402

KEYS = ["pair", "variant", "dice", "move_mm", "polish_kept", "affine_seconds"]
VARIANTS = {"never polished": 0.0, "always polished": math.inf, "agreement rule": None}
MALF_TRAINING_PAIRS = (("1010", "1011"), ("1014", "1015"), ("1012", "1013"), ("1017", "1018"))


def table(rows: list[dict]) -> str:
    by_pair = row_log.by_pair(rows)
    lines = ["| pair | move (mm) | " + " | ".join(VARIANTS) + " |", "|---|---|" + "---|" * len(VARIANTS)]
    for pair, runs in by_pair.items():
        move = runs["always polished"]["move_mm"] if "always polished" in runs else ""
        lines.append(f"| {pair} | {move} | " + " | ".join(f"{float(runs[v]['dice']):.4f}" if v in runs else ""
                                                         for v in VARIANTS) + " |")
    return "\n".join(lines + row_log.mean_lines(by_pair, VARIANTS, ("ICBM", "whole head", "malf2012"), 1)) + "\n"

def main() -> None:
    args, log, rows, done = row_log.start(str(whole_head.CACHE), ("pair", "variant"))
    import avsm
    import avsm.pipeline
    import malf_accuracy

    bench = whole_head.bench
    cases = [(name, bench.image_path(f), bench.image_path(m), bench.label_path(f), bench.label_path(m))
             for name, f, m in pitch_starts.cases(Path(args.cache)) if "_T1_k" in m]
    cases += [(f"malf2012 {f} <- {m}", malf_accuracy.image_path(f), malf_accuracy.image_path(m),
               malf_accuracy.label_path(f), malf_accuracy.label_path(m)) for f, m in MALF_TRAINING_PAIRS]
    rule = avsm.pipeline.AGREEMENT_MM
    for name, fixed, moving, fixed_labels, moving_labels in cases:
        for variant, limit in VARIANTS.items():
            if (name, variant) in done:
                continue
            avsm.pipeline.AGREEMENT_MM = rule if limit is None else limit
            result = avsm.register(fixed, moving, method="affine", similarity="lncc", device="cpu",
                                   fixed_labels=fixed_labels, moving_labels=moving_labels)
            polish = result.report["affine_polish"]
            row_log.record(log, KEYS, rows, {
                "pair": name, "variant": variant, "dice": round(result.report["dice_mean"], 4),
                "move_mm": polish["move_mm"], "polish_kept": polish["kept"],
                "affine_seconds": round(result.report["timings"]["affine"], 1)})
    avsm.pipeline.AGREEMENT_MM = rule
    Path(args.out).write_text(
        "# The affine method's polish after local correlation\n\n"
        f"`python benchmarks/tuning/polish_agreement.py {args.out}`\n\n"
        f"The agreement rule keeps the polish while no step moves the sampled voxels by {rule} mm or more.\n\n"
        + table(rows))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
