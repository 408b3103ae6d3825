"""Speed and peak memory of the engine against volume size, with ANTs SyN / elastix on the same pair.

For each cubic size N (default 96, 128, 192, 256) a fixed/moving pair is made from two training
subjects of malf2012 (1010 <- 1011; or the bundled demo pair without ../shared) resampled onto an N^3
grid covering the head (so larger N = finer voxels, same anatomy). Each measurement runs in a fresh
process (`python benchmarks/speed_scaling.py --one ...`) so its peak RSS is its own:

* end to end: read the files, register, write every output (``avsm register`` semantics);
* stages: the engine's own timings (pre-processing, affine, vSVF, network, full-resolution outputs);
  "network" is the networks' own time (affine + deformable, inference mode), no I/O or pre-processing;
* peak memory: ``ru_maxrss`` of that process (CPU), ``torch.cuda.max_memory_allocated`` on a GPU.

Size ``native`` runs the source pair at its own 1 mm grid (malf2012 1010: 157 x 192 x 163 voxels).

``--repeat N`` runs every measurement N times (each in its own fresh process) and reports the run with the
median end-to-end time, with the spread of the N times.

Usage: ``python benchmarks/speed_scaling.py [--sizes 96,128,192,256,native] [--methods affine,vsvf-opt,avsm,voxelmorph]
[--peers syn,elastix] [--peer-size 192] [--threads 2] [--repeat 1] [--out results.md]``. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
MALF = REPO.parent / "shared" / "data" / "malf2012"
SAMPLE = REPO / "AVSMRegistration" / "avsm" / "sample_data"


def source_pair() -> tuple[Path, Path, str]:
    if (MALF / "1010_SS.nii.gz").exists():
        return MALF / "1010_SS.nii.gz", MALF / "1011_SS.nii.gz", "malf2012 1010 <- 1011 (training subjects)"
    return SAMPLE / "fixed_t1_2mm.nii.gz", SAMPLE / "moving_t1_2mm.nii.gz", "bundled demo pair"


def make_cube(path: Path, size: int, out: Path) -> Path:
    """Resample ``path`` onto an axis-aligned size^3 grid covering its bounding box (linear)."""
    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    corners = [image.TransformIndexToPhysicalPoint([i * (n - 1) for i, n in zip(c, image.GetSize())])
               for c in np.ndindex(2, 2, 2)]
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    spacing = float(np.max(high - low) / (size - 1))
    reference = sitk.Image([size] * 3, sitk.sitkFloat32)
    reference.SetSpacing([spacing] * 3)
    reference.SetOrigin(tuple((low + high) / 2 - spacing * (size - 1) / 2))
    sitk.WriteImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0), str(out))
    return out


def measure_one(method: str, fixed: str, moving: str, threads: int, outdir: str,
                network_spacing: Optional[float] = None) -> dict:
    """Runs inside a fresh process: one end-to-end registration, its timings and peak memory
    (``network_spacing``: the networks' working grid in mm, default the model's). A peer's process does not
    import torch, which it does not use."""
    tick = time.perf_counter()
    if method == "syn":
        import ants

        os.makedirs(outdir, exist_ok=True)
        registration = ants.registration(ants.image_read(fixed), ants.image_read(moving), type_of_transform="SyN",
                                         outprefix=os.path.join(outdir, "syn_"))
        ants.image_write(registration["warpedmovout"], os.path.join(outdir, "warped.nii.gz"))
        stages = {}
    elif method == "elastix":
        import itk

        os.makedirs(outdir, exist_ok=True)
        itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(threads)
        sys.path.insert(0, str(Path(__file__).parent))
        from malf_accuracy import elastix_parameters

        warped, _ = itk.elastix_registration_method(itk.imread(fixed, itk.F), itk.imread(moving, itk.F),
                                                    parameter_object=elastix_parameters(), log_to_console=False)
        itk.imwrite(warped, os.path.join(outdir, "warped.nii.gz"))
        stages = {}
    else:
        import torch

        torch.set_num_threads(threads)
        tick = time.perf_counter()  # in-process time from here, as for the peers: the engine's import, not torch's
        import avsm

        from avsm.methods import NETWORK_METHODS, PRESET_NAMES

        spacing = network_spacing if method in NETWORK_METHODS else None
        choice = {"preset": method} if method in PRESET_NAMES else {"method": method}
        result = avsm.register(fixed, moving, device="cuda" if torch.cuda.is_available() else "cpu",
                               working_spacing=spacing, **choice)
        result.save(outdir)
        stages = dict(result.report["timings"])
        if result.report.get("network"):  # the networks' own time, without the wrapper around them
            stages["network"] = sum(result.report["network"]["timings"].values())
    seconds = time.perf_counter() - tick
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch = sys.modules.get("torch")
    cuda = torch is not None and torch.cuda.is_available()
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return {"seconds": seconds, "stages": stages, "peak_rss_mb": peak_mb, "gpu_peak_mb": gpu_mb,
            "device": torch.cuda.get_device_name() if cuda else f"CPU, {threads} threads"}


def run_isolated(method: str, fixed: Path, moving: Path, threads: int, workdir: Path,
                 network_spacing: Optional[float] = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--one", method, str(fixed), str(moving), "--threads", str(threads),
               "--workdir", str(workdir / f"{method}_{fixed.stem}")]
    if network_spacing is not None:
        command += ["--network-spacing", str(network_spacing)]
    tick = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    process_seconds = time.perf_counter() - tick
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "failed"}
    # the process from its start to its outputs written: interpreter, imports and model loading included
    return {**json.loads(completed.stdout.strip().splitlines()[-1]), "process_seconds": process_seconds}


def median_run(results: list[dict]) -> dict:
    """The run with the median end-to-end time, with ``spread`` = (fastest, slowest) of all runs; or the first error."""
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    ordered = sorted(results, key=lambda r: r["process_seconds"])
    return {**ordered[len(ordered) // 2], "spread": (ordered[0]["process_seconds"], ordered[-1]["process_seconds"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="96,128,192,256", help="cube sizes N, and/or 'native'")
    ap.add_argument("--methods", default="affine,vsvf-opt",
                    help="engine methods (affine, vsvf-opt, avsm, voxelmorph) and presets (fast, default, accurate)")
    ap.add_argument("--peers", default="syn,elastix", help="peers run once, at --peer-size ('' for none)")
    ap.add_argument("--peer-size", default="192", help="size N (or 'native') at which the peers run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="fresh-process runs per measurement; the median is reported")
    ap.add_argument("--out", default=None)
    ap.add_argument("--network-spacing", type=float, default=None,
                    help="working grid of avsm/voxelmorph in mm (default: the model's, see its manifest)")
    ap.add_argument("--one", nargs=3, metavar=("METHOD", "FIXED", "MOVING"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(*args.one, args.threads, args.workdir, args.network_spacing)))
        return 0
    fixed_src, moving_src, label = source_pair()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sizes = [s if s == "native" else int(s) for s in args.sizes.split(",") if s]
        peers = [p for p in args.peers.split(",") if p]
        peer_size = args.peer_size if args.peer_size == "native" else int(args.peer_size)
        order = sorted({s for s in sizes + ([peer_size] if peers else [])}, key=lambda s: 10**9 if s == "native" else s)
        for size in order:
            if size == "native":
                fixed, moving = fixed_src, moving_src
            else:
                fixed = make_cube(fixed_src, size, work / f"fixed_{size}.nii.gz")
                moving = make_cube(moving_src, size, work / f"moving_{size}.nii.gz")
            methods = ([m for m in args.methods.split(",") if m] if size in sizes else []) + (peers if size == peer_size else [])
            header = sitk.ImageFileReader()
            header.SetFileName(str(fixed))
            header.ReadImageInformation()
            voxels = int(np.prod(header.GetSize()))
            for method in methods:
                result = median_run([run_isolated(method, fixed, moving, args.threads, work, args.network_spacing)
                                      for _ in range(args.repeat)])
                rows.append({"size": size, "voxels": voxels, "method": method, **result})
                print(f"{size}^3 {method}: {result}", file=sys.stderr, flush=True)
    repeats = f"; median of {args.repeat} fresh-process runs (fastest-slowest)" if args.repeat > 1 else ""
    lines = [f"Pair: {label}, resampled to N^3; {rows[0].get('device', '') if rows else ''}{repeats}", "",
             "| N^3 | voxels | method | process start to outputs (s) | in-process (s) | pre-process (s) | affine (s) "
             "| vSVF (s) | network (s) | instance opt. (s) | outputs (s) | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['voxels']:,} | {r['method']} | failed: {r['error']} | | | | | | | | |")
            continue
        st = r["stages"]
        cell = lambda k: f"{st[k]:.1f}" if k in st else "-"  # noqa: E731
        network = f"{st['network']:.2f}" if "network" in st else "-"
        spread = f" ({r['spread'][0]:.1f}-{r['spread'][1]:.1f})" if args.repeat > 1 else ""
        lines.append(f"| {r['size']} | {r['voxels']:,} | {r['method']} | {r['process_seconds']:.1f}{spread} | "
                     f"{r['seconds']:.1f} | {cell('read_and_preprocess')} | {cell('affine')} | {cell('vsvf')} | {network} | "
                     f"{cell('instance_opt')} | {cell('outputs')} | {r['peak_rss_mb']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
