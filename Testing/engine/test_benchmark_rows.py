"""The held-out benchmark's bookkeeping (benchmarks/malf_accuracy.py): per-pair rows survive a round trip
through their CSV, and ``--merge`` summarises only the pairs every method finished, later files winning."""
from __future__ import annotations

import csv
from argparse import Namespace

import pytest

from engine_fixtures import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("malf_accuracy", "benchmarks/malf_accuracy.py")


def _row(method, fixed, moving, dice, error=None):
    return {"method": method, "fixed": fixed, "moving": moving, "dice": dice, "fold_fraction": 0.0, "detj_min": 0.5,
            "detj_max": 2.0, "seconds": 3.0, "engine_total_s": None, "network_s": None, "error": error}


def test_pair_rows_round_trip_and_append(bench, tmp_path):
    path = bench.pair_rows_path(str(tmp_path / "shard0.csv"))
    assert path.name == "shard0_pairs.csv"
    bench.write_pair_rows(path, [_row("syn", "1000", "1001", 0.5)])
    bench.write_pair_rows(path, [_row("elastix", "1000", "1001", None, error="RuntimeError: boom")], append=True)
    rows = bench.read_pair_rows(path)
    assert [(r["method"], r["dice"], r["error"]) for r in rows] == [("syn", 0.5, None),
                                                                     ("elastix", None, "RuntimeError: boom")]
    assert rows[0]["network_s"] is None and rows[0]["detj_max"] == 2.0


def test_merge_keeps_common_pairs_and_the_latest_rows(bench, tmp_path):
    first, second = tmp_path / "a_pairs.csv", tmp_path / "b_pairs.csv"
    bench.write_pair_rows(first, [_row("avsm", "1000", "1001", 0.40), _row("syn", "1000", "1001", 0.56),
                                  _row("avsm", "1001", "1002", 0.45), _row("syn", "1001", "1002", None, "Error: x"),
                                  _row("avsm", "1002", "1003", 0.47)])  # syn never ran on 1002<-1003
    bench.write_pair_rows(second, [_row("avsm", "1000", "1001", 0.44)])  # a rerun replaces the first file's row
    out = tmp_path / "merged.csv"
    args = Namespace(merge=f"{first},{second}", out=str(out), threads=1)
    assert bench.merge(args, ["syn", "avsm"]) == 0
    with open(out, newline="") as fh:
        summary = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(summary) == ["syn", "avsm"]
    assert summary["avsm"]["pairs"] == "1" and float(summary["avsm"]["dice_mean"]) == pytest.approx(0.44)
    assert float(summary["syn"]["dice_mean"]) == pytest.approx(0.56)
    merged_rows = bench.read_pair_rows(bench.pair_rows_path(str(out)))
    assert {(r["method"], r["fixed"]) for r in merged_rows} == {("avsm", "1000"), ("syn", "1000")}


def test_resume_keeps_the_rows_of_methods_it_does_not_run(bench, tmp_path):
    out = tmp_path / "shard.csv"
    path = bench.pair_rows_path(str(out))
    bench.write_pair_rows(path, [_row("avsm", "1000", "1001", 0.45), _row("syn", "1000", "1001", 0.56)])
    # pair 0 is 1000<-1001 and its syn row is done: nothing runs, and the avsm row must survive the rewrite
    assert bench.main(["--pairs", "1", "--methods", "syn", "--threads", "1", "--out", str(out), "--resume"]) == 0
    rows = {r["method"]: r["dice"] for r in bench.read_pair_rows(path)}
    assert rows == {"avsm": 0.45, "syn": 0.56}
