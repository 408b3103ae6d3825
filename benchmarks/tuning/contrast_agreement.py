"""The contrast check's sign agreement (``avsm.optimisation.contrast_check``) on pairs of one contrast and of two,
none of them a pair of the benchmark tables and no held-out malf2012 subject: what its threshold was chosen from.

Usage: python benchmarks/tuning/contrast_agreement.py OUT.md [--threads 1]
Each pair runs twice with the default similarity ("auto"): the ``fast`` preset (the check after the networks, as in
``default``) and the ``affine`` method (the check after the mk-LNCC affine, as in ``accurate``). Rows go to
``<OUT stem>_rows.csv`` as they come; rows already there are kept. Pairs:
* one contrast: malf2012 training pairs; synthetic whole-head T1 pairs 4-7 of ``whole_head.py`` (its tables use
  pairs 0-3); the ICBM T1 template under known warps 2-3 (its tables use 0-1); open_ms_lesjak T1 of one patient
  against the T1 of another and against its own post-contrast T1; one patient's T1 at two studies (raw, whole head);
* two contrasts: the same whole-head pairs with a T2- and a FLAIR-like moving image; the ICBM T2-like pairs 2-3;
  open_ms_lesjak T1 against the same patient's T2 or FLAIR; raw T1 against T2 of one study; IXI002 T1 against T2.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import row_log  # noqa: E402
import whole_head  # noqa: E402
from benchmark_data import HELD_OUT, MALF2012, OPEN_MS, SHARED_DATA  # noqa: E402

TRAINING_PAIRS = (("1010", "1011"), ("1014", "1015"), ("1012", "1013"), ("1017", "1018"))
KEYS = ["kind", "pair", "path", "contrast_agreement", "used", "seconds"]


class _Synthesis:  # whole_head.py's defaults
    seed, spacing, fov = 0, (1.0, 1.0, 2.5), (0.70, 0.85)


def cases(cache: Path) -> list[tuple[str, str, str, str]]:
    """(kind, name, fixed path, moving path) of every pair; kind "same" or "different"."""
    folder = cache / "seed0_sp1x1x2.5_fov0.7-0.85"
    folder.mkdir(parents=True, exist_ok=True)
    out = [("same", f"malf2012 {f} <- {m}", str(MALF2012 / f"{f}_SS.nii.gz"), str(MALF2012 / f"{m}_SS.nii.gz"))
           for f, m in TRAINING_PAIRS if f not in HELD_OUT and m not in HELD_OUT]
    for k, (fixed, moving) in enumerate(whole_head.head_pairs(8)):
        if k < 4:
            continue
        for contrast in whole_head.CONTRASTS:
            fixed_key, moving_key = whole_head.head_case(folder, k, fixed, moving, contrast, _Synthesis)
            out.append(("same" if contrast == "T1" else "different", f"whole head {fixed_key} <- {moving_key}",
                        str(folder / f"{fixed_key}.nii.gz"), str(folder / f"{moving_key}.nii.gz")))
    template: list = []
    for contrast in ("T1", "T2"):
        for k in (2, 3):
            fixed_key, moving_key = whole_head.icbm_case(folder, k, contrast, _Synthesis, template)
            out.append(("same" if contrast == "T1" else "different", f"ICBM {fixed_key} <- {moving_key}",
                        str(folder / f"{fixed_key}.nii.gz"), str(folder / f"{moving_key}.nii.gz")))

    def open_ms(patient: str, contrast: str) -> str:
        name = f"{contrast}_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"
        return str(OPEN_MS / f"patient{patient}" / name)

    out += [("same", "open_ms T1 07 <- T1 19", open_ms("07", "T1"), open_ms("19", "T1")),
            ("same", "open_ms T1 07 <- T1POST 07", open_ms("07", "T1"), open_ms("07", "T1POST")),
            ("different", "open_ms T1 07 <- T2 07", open_ms("07", "T1"), open_ms("07", "T2")),
            ("different", "open_ms T1 19 <- FLAIR 19", open_ms("19", "T1"), open_ms("19", "FLAIR"))]
    raw = SHARED_DATA / "open_ms_lesjak" / "longitudinal_raw" / "patient12"
    ixi = SHARED_DATA / "ixi002"
    out += [("same", "raw patient12 study1 T1W <- study2 T1W", str(raw / "study1_T1W.nii.gz"),
             str(raw / "study2_T1W.nii.gz")),
            ("different", "raw patient12 study1 T1W <- study1 T2W", str(raw / "study1_T1W.nii.gz"),
             str(raw / "study1_T2W.nii.gz")),
            ("different", "IXI002 T1 <- T2", str(ixi / "hd_bet_IXI002-Guys-0828-T1.nii.gz"),
             str(ixi / "hd_bet_IXI002-Guys-0828-T2.nii.gz"))]
    return out


def table(rows: list[dict]) -> str:
    lines = ["| pair | kind | after the networks (`fast`, `default`) "
             "| after the mk-LNCC affine (`affine`, `accurate`) |",
             "|---|---|---|---|"]
    by_pair: dict = {}
    for row in rows:
        by_pair.setdefault((row["kind"], row["pair"]), {})[row["path"]] = row
    for (kind, pair), paths in sorted(by_pair.items(), key=lambda item: (item[0][0] != "same", item[0][1])):
        cells = [f"{float(paths[p]['contrast_agreement']):.3f} ({paths[p]['used']})" if p in paths else ""
                 for p in ("networks", "affine")]
        lines.append(f"| {pair} | {kind} | {cells[0]} | {cells[1]} |")
    for kind in ("same", "different"):
        values = [float(r["contrast_agreement"]) for r in rows if r["kind"] == kind]
        if values:
            lines.append(f"\n{kind}: {len(values)} values, {min(values):.3f} to {max(values):.3f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    args, log, rows, done = row_log.start(str(whole_head.CACHE), ("pair", "path"))
    import avsm
    import avsm.optimisation.contrast_check

    for kind, name, fixed, moving in cases(Path(args.cache)):
        for path, choice in (("networks", {"preset": "fast"}), ("affine", {"method": "affine"})):
            if (name, path) in done:
                continue
            result = avsm.register(fixed, moving, device="cpu", **choice)
            similarity = result.report["similarity"]
            row = {"kind": kind, "pair": name, "path": path, "contrast_agreement": similarity["contrast_agreement"],
                   "used": similarity["used"], "seconds": round(result.report["timings"]["total"], 1)}
            row_log.record(log, KEYS, rows, row)
    Path(args.out).write_text("# The contrast check's sign agreement\n\n"
                              f"`python benchmarks/tuning/contrast_agreement.py {args.out}`; threshold "
                              f"{avsm.optimisation.contrast_check.SAME_CONTRAST_MIN} (at or above: one contrast).\n\n"
                              + table(rows))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
