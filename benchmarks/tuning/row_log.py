"""The per-row CSV beside a tuning table: rows written as they come, so that a stopped run goes on where it was."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Callable, Optional


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


def by_pair(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """The rows as {pair: {variant: row}}."""
    pairs: dict = {}
    for row in rows:
        pairs.setdefault(row["pair"], {})[row["variant"]] = row
    return pairs


def mean_lines(pairs: dict[str, dict[str, dict]], variants, groups, empty_columns: int = 0) -> list[str]:
    """A table line per group (pairs whose name starts with it): the mean Dice of each variant, after
    ``empty_columns`` empty cells."""
    lines = []
    for group in groups:
        means = []
        for variant in variants:
            values = [float(runs[variant]["dice"]) for pair, runs in pairs.items()
                      if pair.startswith(group) and variant in runs]
            means.append(f"{sum(values) / len(values):.4f}" if values else "")
        lines.append(f"| mean, {group} | " + "| " * empty_columns + " | ".join(means) + " |")
    return lines


def start(cache: str, keys: tuple[str, str], add_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
          ) -> tuple[argparse.Namespace, Path, list[dict], set]:
    """A tuning script's command line (OUT.md, ``--threads``, default 1, ``--cache``, default ``cache``, and what
    ``add_arguments`` adds), its torch threads set, and its row log: (arguments, log path, the rows already there,
    their ``keys`` values)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=cache)
    if add_arguments is not None:
        add_arguments(ap)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    log = rows_path(args.out)
    rows = read_rows(log)
    return args, log, rows, {tuple(row[key] for key in keys) for row in rows}
