"""The per-row CSV beside a tuning table: rows written as they come, so that a stopped run goes on where it was."""
from __future__ import annotations

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


def append_row(path: Path, keys: list[str], row: dict) -> None:
    """Append ``row`` (its ``keys`` in order), with the header first when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        if new:
            writer.writeheader()
        writer.writerow(row)
