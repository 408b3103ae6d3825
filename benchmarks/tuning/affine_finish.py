"""The network methods' affine finish (``avsm.optimisation.affine_opt.finish_affine``: more steps at the affine
method's 3 mm grid when the networks' deformation is not kept), on pairs of none of the benchmark tables and no
held-out malf2012 subject: what its step count was chosen from.

Usage: python benchmarks/tuning/affine_finish.py OUT.md [--threads 1]
The ``fast`` preset (no option) with no finish, 15 and 30 steps, and the affine method beside it, on the synthetic
whole-head T1 pairs 4-7 of ``whole_head.py`` (its tables use pairs 0-3) and the ICBM T1 template under known warps
2-3 (its tables use 0-1): the pairs of ``pitch_starts.py`` with a T1 moving image. Label Dice as in
``whole_head.py``. Rows go to ``<OUT stem>_rows.csv`` as they come; rows already there are kept.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pitch_starts  # noqa: E402
import row_log  # noqa: E402
import whole_head  # noqa: E402

KEYS = ["pair", "variant", "dice", "deformation_kept", "finish_seconds", "seconds"]
VARIANTS = ("fast, no finish", "fast, 15 steps", "fast, 30 steps", "affine method")


def table(rows: list[dict]) -> str:
    by_pair = row_log.by_pair(rows)
    lines = ["| pair | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for pair, runs in by_pair.items():
        cells = [f"{float(runs[v]['dice']):.4f}" + (f" (+{runs[v]['finish_seconds']} s)" if runs[v]["finish_seconds"]
                                                    else "") if v in runs else "" for v in VARIANTS]
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    lines += row_log.mean_lines(by_pair, VARIANTS, ("whole head", "ICBM"))
    return "\n".join(lines) + "\n\nIn brackets: the seconds the finish took (one thread, a shared machine).\n"


def main() -> None:
    args, log, rows, done = row_log.start(str(whole_head.CACHE), ("pair", "variant"))
    import avsm
    import avsm.pipeline
    from avsm.optimisation.affine_opt import finish_affine

    bench = whole_head.bench
    choices = {VARIANTS[0]: ({"preset": "fast"}, lambda *a, **k: a[4]),  # the refined affine as it is
               VARIANTS[1]: ({"preset": "fast"}, lambda *a, **k: finish_affine(*a, **k, iterations=15)),
               VARIANTS[2]: ({"preset": "fast"}, lambda *a, **k: finish_affine(*a, **k, iterations=30)),
               VARIANTS[3]: ({"method": "affine"}, finish_affine)}
    for name, fixed_key, moving_key in pitch_starts.cases(Path(args.cache)):
        if "_T1_k" not in moving_key:
            continue
        for variant, (choice, finish) in choices.items():
            if (name, variant) in done:
                continue
            avsm.pipeline.finish_affine = finish
            result = avsm.register(bench.image_path(fixed_key), bench.image_path(moving_key), device="cpu",
                                   moving_labels=bench.label_path(moving_key),
                                   fixed_labels=bench.label_path(fixed_key), **choice)
            network = result.report["network"] or {}
            row = {"pair": name, "variant": variant, "dice": round(result.report["dice_mean"], 4),
                   "deformation_kept": network.get("deformation_kept"),
                   "finish_seconds": round(result.report["timings"].get("affine_finish", 0.0), 1) or "",
                   "seconds": round(result.report["timings"]["total"], 1)}
            row_log.record(log, KEYS, rows, row)
    avsm.pipeline.finish_affine = finish_affine
    Path(args.out).write_text("# The network methods' affine finish\n\n"
                              f"`python benchmarks/tuning/affine_finish.py {args.out}`\n\n" + table(rows))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
