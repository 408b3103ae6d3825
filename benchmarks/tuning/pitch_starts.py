"""The mutual-information affine with and without its pitched starts (``avsm.optimisation.affine_opt``), on pairs of
none of the benchmark tables and no held-out malf2012 subject: what the starts were chosen from.

Usage: python benchmarks/tuning/pitch_starts.py OUT.md [--threads 1]
The affine method with ``similarity="mi"`` on the synthetic whole-head pairs 4-7 of ``whole_head.py`` (its tables use
pairs 0-3) with a T1-, T2- and FLAIR-like moving image, and on the ICBM template under known warps 2-3 (its tables
use 0-1), T1 and T2-like; each pair from the centre of mass alone and with the pitched starts. Label Dice as in
``whole_head.py`` (the 32 brain labels; GM, WM, CSF on ICBM). Rows go to ``<OUT stem>_rows.csv`` as they come; rows
already there are kept.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import row_log  # noqa: E402
import whole_head  # noqa: E402

KEYS = ["pair", "starts", "dice", "affine_seconds"]


class _Synthesis:  # whole_head.py's defaults
    seed, spacing, fov = 0, (1.0, 1.0, 2.5), (0.70, 0.85)


def cases(cache: Path) -> list[tuple[str, str, str]]:
    """(name, fixed key, moving key) of every pair, synthesised into ``cache`` unless already there."""
    folder = cache / "seed0_sp1x1x2.5_fov0.7-0.85"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for contrast in whole_head.CONTRASTS:
        for k, (fixed, moving) in enumerate(whole_head.head_pairs(8)):
            if k >= 4:
                keys = whole_head.head_case(folder, k, fixed, moving, contrast, _Synthesis)
                out.append((f"whole head {keys[0]} <- {keys[1]}", *keys))
    template: list = []
    for contrast in ("T1", "T2"):
        for k in (2, 3):
            keys = whole_head.icbm_case(folder, k, contrast, _Synthesis, template)
            out.append((f"ICBM {keys[0]} <- {keys[1]}", *keys))
    return out


def table(rows: list[dict], pitches: tuple) -> str:
    by_pair: dict = {}
    for row in rows:
        by_pair.setdefault(row["pair"], {})[row["starts"]] = row
    lines = ["| pair | centre of mass only | with the pitched starts | difference (points) |", "|---|---|---|---|"]
    gains = []
    for pair, runs in by_pair.items():
        if "none" in runs and "pitched" in runs:
            alone, searched = float(runs["none"]["dice"]), float(runs["pitched"]["dice"])
            gains.append(100 * (searched - alone))
            lines.append(f"| {pair} | {alone:.4f} ({runs['none']['affine_seconds']} s) | {searched:.4f} "
                         f"({runs['pitched']['affine_seconds']} s) | {gains[-1]:+.2f} |")
    if gains:
        lines.append(f"\n{len(gains)} pairs: mean {sum(gains) / len(gains):+.2f} points, from {min(gains):+.2f} to "
                     f"{max(gains):+.2f}; starts {', '.join(f'{p:+g}' for p in pitches)} degrees; seconds: the "
                     "affine stage, one thread, a shared machine")
    return "\n".join(lines) + "\n"


def main() -> None:
    args, log, rows, done = row_log.start(str(whole_head.CACHE), ("pair", "starts"))
    import SimpleITK as sitk

    import avsm
    import avsm.pipeline

    bench = whole_head.bench
    pitches = avsm.pipeline.PITCH_STARTS_DEG
    for name, fixed_key, moving_key in cases(Path(args.cache)):
        for starts, degrees in (("none", ()), ("pitched", pitches)):
            if (name, starts) in done:
                continue
            avsm.pipeline.PITCH_STARTS_DEG = degrees  # what _optimised_affine tries beside the centre of mass
            result = avsm.register(bench.image_path(fixed_key), bench.image_path(moving_key), method="affine",
                                   similarity="mi", device="cpu", moving_labels=bench.label_path(moving_key),
                                   fixed_labels=bench.label_path(fixed_key))
            dice = bench.dice_mean(sitk.GetArrayFromImage(result.warped_labels),
                                   sitk.GetArrayFromImage(result.fixed_labels))
            row = {"pair": name, "starts": starts, "dice": round(dice, 4),
                   "affine_seconds": round(result.report["timings"]["affine"], 1)}
            row_log.record(log, KEYS, rows, row)
    avsm.pipeline.PITCH_STARTS_DEG = pitches
    Path(args.out).write_text("# The mutual-information affine's pitched starts\n\n"
                              f"`python benchmarks/tuning/pitch_starts.py {args.out}`\n\n" + table(rows, pitches))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
