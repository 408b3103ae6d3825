"""Instance-optimisation settings on the validation subjects: the AVSM network, then N iterations of one more
vSVF step for each pair with ``INSTANCE_OPT_SETTINGS`` changed as named, every directed pair of the subjects.

Each setting is ``NAME=ITERATIONS[:field=value,...]`` with fields of ``avsm.optimisation.VSVFSettings``::

    python benchmarks/tuning/instance_opt.py --threads 1 \\
        --settings "first-order=30:search_time_steps=0" "rk1=30" "rk2=30:search_time_steps=2" "rk1-40=40" \\
        --out benchmarks/tuning/instance_opt.md

Refuses the held-out subjects. Columns: see ``benchmark_data.PAIR_COLUMNS``; ``cpu s`` is the process CPU time
per pair (a cost less sensitive than wall time to other jobs on a shared machine).
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_setting(text: str) -> tuple[str, int, dict]:
    """``NAME=ITERATIONS[:field=value,...]`` -> (name, iterations, VSVFSettings overrides)."""
    name, _, rest = text.partition("=")
    count, _, fields = rest.partition(":")
    call = ast.parse(f"settings({fields})", mode="eval").body  # top-level commas only: values may be tuples
    overrides = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    return name.strip(), int(count), overrides


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", required=True, help="NAME=ITERATIONS[:field=value,...]")
    from benchmark_data import add_validation_arguments

    add_validation_arguments(parser, threads=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import dataclasses

    import torch

    from avsm.optimisation import INSTANCE_OPT_SETTINGS
    from benchmark_data import PAIR_COLUMNS, print_table, register_every_pair, require_malf2012, validation_subjects

    torch.set_num_threads(args.threads)
    subjects = validation_subjects(parser, args.subjects)
    require_malf2012()
    rows = []
    for text in args.settings:
        name, iterations, overrides = parse_setting(text)
        settings = dataclasses.replace(INSTANCE_OPT_SETTINGS, **overrides)
        tick = time.process_time()
        cells = register_every_pair(subjects, name, method="avsm", instance_opt=iterations, vsvf_settings=settings)
        cpu = (time.process_time() - tick) / (len(subjects) * (len(subjects) - 1))
        rows.append(f"| {name} | {iterations} | {overrides or 'as shipped'} {cells} {cpu:.1f} |")
    print_table(f"AVSM + instance optimisation on validation subjects {','.join(subjects)} ({args.threads} thread(s))",
                ["setting", "iterations", "changes", *PAIR_COLUMNS, "cpu s"], rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
