"""Cohort batch mode: per-pair failures recorded, resume skips finished pairs, torchrun shares pairs."""
import csv
import os
import subprocess
import sys

from avsm.cli import main

from engine_fixtures import SAMPLE_DATA

FAST = ["--method", "affine", "--affine-iterations", "3", "--working-spacing", "6", "--progress", "none"]


def _pairs_csv(tmp_path, rows):
    path = tmp_path / "pairs.csv"
    path.write_text("fixed,moving,moving_labels,fixed_labels,name\n" + "\n".join(rows) + "\n")
    return path


def _summary(outdir):
    with open(outdir / "summary.csv", newline="") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def test_failures_are_recorded_per_pair_and_the_rest_complete(tmp_path):
    fixed, moving = SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz"
    masks = f"{SAMPLE_DATA / 'moving_brainmask_2mm.nii.gz'},{SAMPLE_DATA / 'fixed_brainmask_2mm.nii.gz'}"
    pairs = _pairs_csv(tmp_path, [
        f"{fixed},{moving},{masks},good",
        f"{fixed},{tmp_path / 'missing.nii.gz'},,,missing",
        f"{fixed},,,,malformed",
        f"{moving},{fixed},,,reverse",
    ])
    outdir = tmp_path / "out"
    assert main(["batch", str(pairs), "-o", str(outdir), *FAST]) == 1  # non-zero: some pairs failed
    summary = _summary(outdir)
    assert summary["good"]["status"] == "ok" and float(summary["good"]["dice_mean"]) > 0.8
    assert summary["reverse"]["status"] == "ok"
    assert summary["missing"]["status"] == "failed" and "moving file not found" in summary["missing"]["error"]
    assert summary["malformed"]["status"] == "failed" and "lacks a fixed or moving path" in summary["malformed"]["error"]
    assert (outdir / "good" / "report.json").is_file() and not (outdir / "missing").exists()

    # a rerun skips what is finished and loses nothing already written
    before = (outdir / "good" / "warped.nii.gz").stat().st_mtime_ns
    main(["batch", str(pairs), "-o", str(outdir), *FAST])
    summary = _summary(outdir)
    assert summary["good"]["status"] == "skipped" and summary["reverse"]["status"] == "skipped"
    assert (outdir / "good" / "warped.nii.gz").stat().st_mtime_ns == before


def test_two_torchrun_ranks_share_the_pairs(tmp_path):
    fixed, moving = SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz"
    pairs = _pairs_csv(tmp_path, [f"{fixed},{moving},,,a", f"{moving},{fixed},,,b", f"{fixed},{moving},,,c"])
    outdir = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
                                "-m", "avsm", "batch", str(pairs), "-o", str(outdir), *FAST],
                               capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = _summary(outdir)
    assert [summary[n]["status"] for n in "abc"] == ["ok", "ok", "ok"]
    with open(outdir / "summary.rank0.csv") as r0, open(outdir / "summary.rank1.csv") as r1:
        assert len(list(csv.DictReader(r0))) == 2 and len(list(csv.DictReader(r1))) == 1
