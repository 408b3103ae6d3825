"""An AVSM model on whole heads, run as the presets run the bundled one: what a candidate must show there before it
ships, on pairs of none of the benchmark tables and no held-out malf2012 subject.

Usage: python benchmarks/tuning/network_whole_heads.py OUT.md [--model PATH --label NAME] [--presets fast,default]
[--threads 1]
Without ``--model`` the bundled models run (label "shipped"). With it, PATH (a model or training checkpoint) takes
the bundled AVSM model's place in a models folder of its own (``AVSM_MODELS_DIR``), with the bundled model's
test-time grid (the manifest's ``inference_spacing_mm``) when it trained on the same grid (else its own training
grid) and the bundled VoxelMorph model beside it, so that the
presets treat it as they treat the bundled one (``model=PATH`` would count as a chosen model and change how the
networks run across contrasts). Pairs: the synthetic whole-head T1 pairs 4-7 of ``whole_head.py`` (its tables use
pairs 0-3) and the ICBM T1 template under its known warps 2-3 (the tables use 0-1). Label Dice as in
``whole_head.py``; "similarity" is what the contrast check chose (a pair of one contrast sent to mutual information
has lost the networks), "deformation" whether the networks' deformation was kept. Rows go to ``<OUT stem>_rows.csv``
as they come; rows already there are kept.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import pitch_starts  # noqa: E402
import row_log  # noqa: E402
import whole_head  # noqa: E402

KEYS = ["pair", "variant", "dice", "similarity", "contrast_agreement", "deformation_kept", "affine_finished", "seconds"]


def candidate_models(model: Path, folder: Path) -> None:
    """A models folder in which ``model`` is the AVSM model: on the bundled AVSM model's test-time grid when it was
    trained on the bundled model's grid, else on its own training grid (call it before ``AVSM_MODELS_DIR`` points at
    ``folder``)."""
    from avsm.checkpoints import models_dir, sha256_of

    bundled_dir = models_dir()
    bundled = json.loads((bundled_dir / "manifest.json").read_text())["models"]
    avsm_entry = next(entry for entry in bundled if entry["method"] == "avsm")
    import torch

    spacing = float(torch.load(model, map_location="cpu", weights_only=True)["working_spacing_mm"])
    # the bundled model's test-time grid when the candidate trained on the same grid, else its own training grid
    inference = avsm_entry.get("inference_spacing_mm") if spacing == avsm_entry.get("working_spacing_mm") else None
    entries = [{"name": f"candidate {model.name}", "method": "avsm", "file": "candidate.pt", "sha256": sha256_of(model),
                "working_spacing_mm": spacing, "inference_spacing_mm": inference}]
    shutil.copy(model, folder / "candidate.pt")
    for entry in bundled:
        if entry["method"] != "avsm":
            entries.append(entry)
            shutil.copy(bundled_dir / entry["file"], folder / entry["file"])
    (folder / "manifest.json").write_text(json.dumps({"models": entries}, indent=2))


def table(rows: list[dict]) -> str:
    pairs = row_log.by_pair(rows)
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    lines = ["| pair | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for pair, runs in pairs.items():
        cells = []
        for variant in variants:
            row = runs.get(variant)
            cells.append("" if row is None else f"{float(row['dice']):.4f}"
                         + (" (mi)" if row["similarity"] == "mi" else "")
                         + (" d" if str(row["deformation_kept"]) == "True" else ""))
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines + row_log.mean_lines(pairs, variants, ("whole head", "ICBM"))) + "\n"


def _arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--model", default=None, help="a model or training checkpoint in the bundled AVSM model's place")
    ap.add_argument("--label", default=None,
                    help="its column's name (default: the file's name without its suffix; 'shipped' without)")
    ap.add_argument("--presets", default="fast")


def main() -> None:
    args, log, rows, done = row_log.start(str(whole_head.CACHE), ("pair", "variant"), _arguments)
    label = args.label or (Path(args.model).stem if args.model else "shipped")
    if args.model:
        folder = Path(tempfile.mkdtemp(prefix="avsm_candidate_"))
        atexit.register(shutil.rmtree, folder, True)
        candidate_models(Path(args.model).resolve(), folder)
        os.environ["AVSM_MODELS_DIR"] = str(folder)
    import avsm
    from avsm.inference import default_model

    print(f"AVSM model: {default_model('avsm', None).name}", flush=True)
    bench = whole_head.bench
    cases = [(name, f, m) for name, f, m in pitch_starts.cases(Path(args.cache)) if "_T1_k" in m]
    for preset in args.presets.split(","):
        variant = f"{label}, {preset}"
        for name, fixed, moving in cases:
            if (name, variant) in done:
                continue
            report = avsm.register(bench.image_path(fixed), bench.image_path(moving), preset=preset, device="cpu",
                                   fixed_labels=bench.label_path(fixed), moving_labels=bench.label_path(moving)).report
            network, similarity = report["network"], report["similarity"]
            row_log.record(log, KEYS, rows, {
                "pair": name, "variant": variant, "dice": round(report["dice_mean"], 4), "similarity": similarity["used"],
                "contrast_agreement": similarity.get("contrast_agreement"),
                "deformation_kept": network.get("deformation_kept"), "affine_finished": network.get("affine_finished"),
                "seconds": round(report["timings"]["total"], 1)})
    Path(args.out).write_text(
        "# An AVSM model on whole heads, as the presets run it\n\n"
        "`python benchmarks/tuning/network_whole_heads.py OUT.md [--model PATH --label NAME] [--presets ...]`, "
        "one run per column\n\n"
        "Label Dice; (mi): the contrast check sent the pair to mutual information, without the networks; d: the "
        "networks' deformation was kept.\n\n" + table(rows))


if __name__ == "__main__":
    main()
