"""The ``avsm`` command line: ``avsm register``, ``avsm demo``, ``avsm train``.

Errors: one line on stderr (``avsm: error: ...``), exit code 2 for bad input, no partial output.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import AVSMError
from .methods import (DEFAULT_PRESET, DEFAULT_SIMILARITY, METHOD_NAMES, METHODS, OPTIONS, PRESET_NAMES, PRESETS,
                      SIMILARITY_CHOICES, check_options, option_help, resolve)
from .output_folder import check_writable

SAMPLE_DATA = Path(__file__).parent / "sample_data"


def _register_arguments(parser: argparse.ArgumentParser, with_inputs: bool = True) -> None:
    if with_inputs:
        parser.add_argument("fixed", help="fixed (target) image: NIfTI, NRRD, MHA, ...")
        parser.add_argument("moving", help="moving (source) image")
    parser.add_argument("-o", "--output", required=with_inputs, default=None, help="output folder")
    parser.add_argument("--preset", default=None, choices=PRESET_NAMES,
                        help="; ".join(f"{p.name}: {p.description.rstrip('.')}" for p in PRESETS.values())
                        + f"; when no --method is given: {DEFAULT_PRESET}")
    parser.add_argument("--method", default=None, help=f"{' | '.join(METHOD_NAMES)}: the method alone, with its own "
                        "defaults (instead of a preset)")
    parser.add_argument("--moving-labels", default=None, help="label map on the moving image's grid")
    parser.add_argument("--fixed-labels", default=None, help="label map on the fixed image's grid (Dice in the report)")
    parser.add_argument("--fixed-mask", default=None,
                        help="mask on the fixed image's grid: the images are compared only inside it (non-zero)")
    parser.add_argument("--moving-mask", default=None, help="mask on the moving image's grid, likewise")
    parser.add_argument("--initial-transform", default=None,
                        help="linear ITK transform file (fixed -> moving points, e.g. from landmarks): the affine "
                             "stage starts from it instead of the centre-of-mass alignment")
    parser.add_argument("--similarity", default=DEFAULT_SIMILARITY, choices=SIMILARITY_CHOICES,
                        help="how the images are compared: auto (default: local correlation while the roughly "
                             "aligned images look like one contrast, else mutual information), lncc (local "
                             "correlation, same contrast) or mi (mutual information, e.g. T1 against T2 or FLAIR; the "
                             "network methods then run the affine optimisation in place of their networks unless "
                             "--model or a network option is given)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    for option in OPTIONS.values():  # each method's own (avsm.methods); a method refuses the others
        if option.command_line:
            parser.add_argument(option.flag, type=option.type, default=None, help=option_help(option),
                                metavar="N" if option.type is int else None)
    spacings = ", ".join(f"{m.working_spacing_mm:g} {m.name}" for m in METHODS.values() if m.working_spacing_mm)
    parser.add_argument("--working-spacing", type=float, default=None,
                        help=f"working grid spacing in mm (default: {spacings}; a bundled network's manifest "
                             "inference_spacing_mm, else its training grid; the defaults no finer than the images' "
                             "finest voxel spacing)")
    parser.add_argument("--progress", default=None, choices=("json", "bar", "none"),
                        help="progress style (default: bar on a terminal, none otherwise)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avsm", description="Deep and optimisation-based image registration")
    commands = parser.add_subparsers(dest="command", required=True)
    _register_arguments(commands.add_parser("register", help="register MOVING to FIXED"))
    demo = commands.add_parser("demo", help="register the bundled demo pair (open_ms patient07 T1 <- IXI002 T1, 2 mm)")
    _register_arguments(demo, with_inputs=False)
    batch = commands.add_parser("batch", help="register every pair of a CSV (fixed,moving[,moving_labels,fixed_labels,name]); "
                                              "resumable; under torchrun each rank takes its share")
    batch.add_argument("pairs", help="CSV with a header: fixed, moving, optional moving_labels, fixed_labels, name")
    _register_arguments(batch, with_inputs=False)
    batch.add_argument("--workers", type=int, default=1, help="parallel worker processes on this machine")
    train = commands.add_parser("train", help="train an avsm or voxelmorph network from a TOML config "
                                              "(multi-process: torchrun ... -m avsm.training CONFIG)")
    train.add_argument("config", nargs="?", help="TOML configuration (see --describe)")
    train.add_argument("--resume", default=None, help="'auto' (latest checkpoint of the run folder) or a checkpoint path")
    train.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this global step")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="wall-clock budget: then stop with a checkpoint and model.pt (default: train.max_minutes)")
    train.add_argument("--run-dir", default=None, help="output folder instead of the config's run_dir")
    train.add_argument("--describe", action="store_true", help="print every configuration field and exit")
    return parser


def _method_options(args: argparse.Namespace) -> dict:
    """The methods' options as parsed (None: not given), by ``avsm.register`` keyword."""
    return {name: getattr(args, name) for name, option in OPTIONS.items() if option.command_line}


def _progress(style: Optional[str]):
    from .progress import BarProgress, JsonLinesProgress, silent

    if style is None:
        style = "bar" if sys.stderr.isatty() else "none"
    if style == "json":
        return JsonLinesProgress(sys.stdout), None
    if style == "bar":
        bar = BarProgress()
        return bar, bar
    return silent, None


def run_register(args: argparse.Namespace, fixed: str, moving: str, outdir: str,
                 moving_labels: Optional[str], fixed_labels: Optional[str]) -> int:
    from .pipeline import register

    resolve(args.preset, args.method)
    check_writable(outdir)
    callback, bar = _progress(args.progress)
    try:
        result = register(fixed, moving, method=args.method, preset=args.preset, moving_labels=moving_labels,
                          fixed_labels=fixed_labels, device=args.device, progress=callback,
                          working_spacing=args.working_spacing, fixed_mask=args.fixed_mask,
                          moving_mask=args.moving_mask, initial_transform=args.initial_transform,
                          similarity=args.similarity, **_method_options(args))
        saved = result.save(outdir)
    finally:
        if bar is not None:
            bar.close()
    if args.progress == "json":
        print(json.dumps({"event": "done", "outdir": str(saved), "summary": result.summary}), flush=True)
    else:
        print(f"outputs written to {saved}")
        print(result.summary)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .training import describe, train

    if args.describe:
        print(describe())
        return 0
    if args.config is None:
        raise AVSMError("avsm train needs a CONFIG.toml (see avsm train --describe)")
    model = train(args.config, resume=args.resume, stop_after=args.stop_after, max_minutes=args.max_minutes,
                  run_dir=args.run_dir)
    if model.exists():
        print(f"model written to {model}")
    return 0


def run_batch_command(args: argparse.Namespace) -> int:
    from .batch import run_batch

    if not args.output:
        raise AVSMError("avsm batch needs an output folder: -o OUTDIR")
    if args.workers < 1:
        raise AVSMError(f"--workers must be at least 1 (got {args.workers})")
    method, preset_options = resolve(args.preset, args.method)
    check_options(method, _method_options(args), preset_options)  # before any pair
    check_writable(args.output)
    callback, bar = _progress(args.progress)
    options = dict(method=args.method, preset=args.preset, device=args.device, working_spacing=args.working_spacing,
                   fixed_mask=args.fixed_mask, moving_mask=args.moving_mask,
                   initial_transform=args.initial_transform, similarity=args.similarity, **_method_options(args))
    try:
        records = run_batch(args.pairs, args.output, options, workers=args.workers, progress=callback)
    finally:
        if bar is not None:
            bar.close()
    failed = [r for r in records if r["status"] == "failed"]
    print(f"{len(records) - len(failed)} of {len(records)} pairs registered or already done; "
          f"summary in {Path(args.output) / 'summary.csv'}")
    for record in failed:
        print(f"failed: {record['name']}: {record['error']}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "register":
            return run_register(args, args.fixed, args.moving, args.output, args.moving_labels, args.fixed_labels)
        if args.command == "train":
            return run_train(args)
        if args.command == "batch":
            return run_batch_command(args)
        if args.command == "demo":
            outdir = args.output or "demo_output"
            return run_register(args, str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"),
                                str(SAMPLE_DATA / "moving_t1_2mm.nii.gz"), outdir,
                                args.moving_labels or str(SAMPLE_DATA / "moving_brainmask_2mm.nii.gz"),
                                args.fixed_labels or str(SAMPLE_DATA / "fixed_brainmask_2mm.nii.gz"))
    except AVSMError as error:
        print(f"avsm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avsm: error: interrupted", file=sys.stderr)
        return 130
    return 1
