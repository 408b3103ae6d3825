"""Cohort batch mode: ``avsm batch PAIRS.csv -o OUTDIR [--workers N]``.

PAIRS.csv has a header with ``fixed`` and ``moving`` columns and optionally ``moving_labels``,
``fixed_labels`` and ``name`` (the output sub-folder; default ``pair_<row number>``). Relative paths are
taken relative to the CSV's folder. Each pair is written atomically to ``OUTDIR/<name>/`` by
:meth:`RegistrationResult.save`, so a folder holding ``report.json`` is complete and is skipped on a
rerun: an interrupted batch resumes where it stopped. A failing pair (missing file, malformed row, bad
image) is recorded with its reason in ``OUTDIR/summary.csv`` and the others go on.

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) each rank takes every WORLD_SIZE-th pair; rank 0 merges
the per-rank summaries after a barrier (gloo process group).
"""
from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .checkpoints import atomic_write
from .errors import AVSMError
from .output_folder import check_writable

SUMMARY_FIELDS = ("name", "status", "dice_mean", "fold_fraction", "seconds", "error")
SAFE_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class PairJob:
    row: int
    name: str
    fixed: Optional[str]
    moving: Optional[str]
    moving_labels: Optional[str]
    fixed_labels: Optional[str]
    problem: Optional[str] = None  # a malformed row: recorded as a failure, never run


def read_pairs(csv_path: Path) -> list[PairJob]:
    if not csv_path.is_file():
        raise AVSMError(f"pairs file not found: {csv_path}")
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"fixed", "moving"} <= set(reader.fieldnames):
            raise AVSMError(f"pairs file {csv_path} needs a header with 'fixed' and 'moving' columns "
                            f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
        rows = list(reader)
    base = csv_path.parent
    jobs, seen = [], set()
    for number, row in enumerate(rows, start=1):

        def path(key: str) -> Optional[str]:
            value = (row.get(key) or "").strip()
            return str((base / value) if not Path(value).is_absolute() else Path(value)) if value else None

        name = (row.get("name") or "").strip() or f"pair_{number:04d}"
        problem = None
        if None in row:
            problem = f"row {number} has more fields than the header"
        elif not path("fixed") or not path("moving"):
            problem = f"row {number} lacks a fixed or moving path"
        elif not set(name) <= SAFE_NAME or name in (".", ".."):
            problem = f"row {number} has an unusable name '{name}' (letters, digits, '.', '_', '-' only)"
        elif name in seen:
            problem = f"row {number} repeats the name '{name}'"
        if not set(name) <= SAFE_NAME or name in (".", "..") or name in seen:
            name = f"pair_{number:04d}"
        seen.add(name)
        jobs.append(PairJob(number, name, path("fixed"), path("moving"), path("moving_labels"), path("fixed_labels"), problem))
    return jobs


def _run_pair(job: PairJob, outdir: str, options: dict, threads: Optional[int]) -> dict:
    """Register one pair (in this process or a worker); never raises for a per-pair problem."""
    import torch

    from .pipeline import register

    if threads:
        torch.set_num_threads(threads)
    record = {"name": job.name, "status": "failed", "dice_mean": "", "fold_fraction": "", "seconds": "", "error": ""}
    if job.problem:
        record["error"] = job.problem
        return record
    target = Path(outdir) / job.name
    if (target / "report.json").is_file():
        report = json.loads((target / "report.json").read_text())
        record.update(status="skipped", dice_mean=report.get("dice_mean") or "", fold_fraction=report["fold_fraction"],
                      seconds=report["timings"]["total"])
        return record
    started = time.perf_counter()
    try:
        result = register(job.fixed, job.moving, moving_labels=job.moving_labels, fixed_labels=job.fixed_labels, **options)
        result.save(target)
    except AVSMError as error:
        record["error"] = str(error)
        return record
    except Exception as error:  # one broken pair must not stop a cohort
        record["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        return record
    record.update(status="ok", dice_mean=result.report["dice_mean"] if result.report["dice_mean"] is not None else "",
                  fold_fraction=result.report["fold_fraction"], seconds=round(time.perf_counter() - started, 3))
    return record


def _write_summary(path: Path, records: list[dict]) -> None:
    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
            writer.writeheader()
            writer.writerows(records)

    atomic_write(path, write)


def run_batch(pairs_csv: str, outdir: str, options: dict, workers: int = 1, progress=None) -> list[dict]:
    """Register every pair of this rank's share; return the records (rank 0: all ranks' records)."""
    out = check_writable(outdir)
    jobs = read_pairs(Path(pairs_csv))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AVSMError(f"output folder is not writable: {out} ({error.strerror})") from None
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    mine = jobs[rank::world]
    records: list[dict] = []
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_run_pair, job, outdir, options, threads) for job in mine]
            for done, future in enumerate(futures, start=1):
                records.append(future.result())
                if progress:
                    progress("batch", done / max(len(mine), 1), f"{records[-1]['name']}: {records[-1]['status']}")
    else:
        for done, job in enumerate(mine, start=1):
            records.append(_run_pair(job, outdir, options, None))
            if progress:
                progress("batch", done / max(len(mine), 1), f"{job.name}: {records[-1]['status']}")
    if world == 1:
        _write_summary(out / "summary.csv", records)
        return records
    _write_summary(out / f"summary.rank{rank}.csv", records)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
    if rank == 0:
        merged = []
        for r in range(world):
            with open(out / f"summary.rank{r}.csv", newline="") as handle:
                merged.extend(csv.DictReader(handle))
        order = {job.name: job.row for job in jobs}
        merged.sort(key=lambda record: order.get(record["name"], 0))
        _write_summary(out / "summary.csv", merged)
        records = merged
    dist.barrier()
    dist.destroy_process_group()
    return records
