"""The per-row CSV beside a tuning table: rows written as they come, so that a stopped run goes on where it was."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def rows_path(out: str) -> Path:
    """``<OUT stem>_rows.csv`` beside the table ``out``."""
    return Path(out).with_name(Path(out).stem + "_rows.csv")


def read_rows(path: Path) -> list[dict]:
    """The rows already written (none when the file is not there)."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def record(path: Path, keys: list[str], rows: list[dict], row: dict) -> None:
    """Append ``row`` (its ``keys`` in order) to the log, with the header first when the file is new, to ``rows``,
    and print it."""
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        if new:
            writer.writeheader()
        writer.writerow(row)
    rows.append(row)
    print(row, flush=True)


def start(cache: str, keys: tuple[str, str]) -> tuple[argparse.Namespace, Path, list[dict], set]:
    """A tuning script's command line (OUT.md, ``--threads``, default 1, ``--cache``, default ``cache``), its torch
    threads set, and its row log: (arguments, log path, the rows already there, their ``keys`` values)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=cache)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    log = rows_path(args.out)
    rows = read_rows(log)
    return args, log, rows, {tuple(row[key] for key in keys) for row in rows}
