"""Paired comparison of two methods over the pairs both finished, from per-pair CSVs of ``malf_accuracy.py``.

    python benchmarks/paired.py default syn benchmarks/results/presets_90_pairs.csv \\
        benchmarks/results/malf_90_with_peers_pairs.csv

Prints the number of common pairs, both means, the mean difference (Dice points), its range, and on how many
pairs the first method is above the second. Later files replace the same (method, pair) rows of earlier ones.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from malf_accuracy import read_pair_rows  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3:
        raise SystemExit(__doc__)
    first, second, files = argv[0], argv[1], argv[2:]
    dice: dict[tuple[str, str, str], float] = {}
    for name in files:
        for row in read_pair_rows(name):
            if not row["error"]:
                dice[(row["method"], row["fixed"], row["moving"])] = row["dice"]
    pairs = sorted({(f, m) for (method, f, m) in dice if method == first} &
                   {(f, m) for (method, f, m) in dice if method == second})
    if not pairs:
        raise SystemExit(f"no pair has both {first} and {second}")
    a = [dice[(first, *p)] for p in pairs]
    b = [dice[(second, *p)] for p in pairs]
    diff = [100 * (x - y) for x, y in zip(a, b)]
    print(f"{len(pairs)} pairs: {first} {sum(a) / len(a):.4f}, {second} {sum(b) / len(b):.4f}; "
          f"{first} - {second} = {sum(diff) / len(diff):+.2f} points ({min(diff):+.2f} to {max(diff):+.2f}); "
          f"{first} above on {sum(d > 0 for d in diff)} of {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
