"""Network and end-to-end speed on tensors alone (torch and numpy; no SimpleITK, no image files).

Usage: ``python benchmarks/gpu_speed.py CONFIG.toml [--model model.pt] [--size 160 192 160] [--spacing 1.0]
[--repeats 10] [--device auto] [--output speed.md]``.

The network is the config's ``[network]`` on its training grid (``data.grid_shape`` at
``data.working_spacing_mm``), with the weights of ``--model`` or random ones (the time does not depend on
the weights). The pair is two smooth random volumes of ``--size`` voxels at ``--spacing`` mm (default a
1 mm brain, 160 x 192 x 160), centred like the working grid. Rows (median milliseconds of ``--repeats`` runs
after one warm-up, the device synchronised around each stage):

* affine network (``affine_steps`` recurrent steps) and deformable network (``vsvf_steps`` vSVF steps), on
  the working grid;
* end to end at the volume's resolution, a proxy of ``avsm.register`` without file input and output:
  resample both volumes to the working grid (trilinear), both networks, the map brought back to the
  volume's grid (:func:`avsm.maps.resample_map`), the moving volume warped there.

The table goes to stdout and, with ``--output``, to a markdown file; the peak device memory is in its title.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "AVSMRegistration"))

from avsm.checkpoints import load as load_checkpoint  # noqa: E402
from avsm.errors import AVSMError  # noqa: E402
from avsm.geometry import Grid, physical_points  # noqa: E402
from avsm.maps import resample_map, warp_image  # noqa: E402
from avsm.networks import build_network  # noqa: E402
from avsm.training import load_config  # noqa: E402
from avsm.training.data import training_grid  # noqa: E402

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def centred_grid(shape: tuple[int, int, int], spacing: float) -> Grid:
    """A (D, H, W) grid of ``spacing`` mm whose centre is the physical origin (as the training grid's)."""
    d, h, w = shape
    origin = -(np.array([w, h, d], dtype=np.float64) - 1) * spacing / 2.0
    return Grid(tuple(shape), (spacing,) * 3, tuple(float(o) for o in origin), IDENTITY_DIRECTION)


def smooth_volume(shape: tuple[int, int, int], seed: int, device: torch.device) -> torch.Tensor:
    """``1 x 1 x D x H x W`` smooth random volume in [0, 1] (coarse noise, trilinearly upsampled)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, 1, 8, 8, 8), generator=generator)
    return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True).to(device)


def timed(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Median milliseconds of ``repeats`` calls after one warm-up, and the last result."""
    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    result = run()
    synchronise()
    times = []
    for _ in range(repeats):
        synchronise()
        started = time.perf_counter()
        result = run()
        synchronise()
        times.append(1000.0 * (time.perf_counter() - started))
    return statistics.median(times), result


def benchmark(config_path: str, model: str | None, size: tuple[int, int, int], spacing: float, repeats: int,
              device_name: str) -> str:
    config = load_config(config_path)
    if device_name == "cuda" and not torch.cuda.is_available():
        raise AVSMError("--device cuda but no CUDA GPU is available")
    device = torch.device("cuda" if device_name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    network = build_network(config.network)
    if model:
        network.load_state_dict(load_checkpoint(Path(model), what="--model")["state_dict"])
    network = network.to(device).eval()
    working = training_grid(config)
    volume_grid = centred_grid(size, spacing)
    fixed = smooth_volume(size, 1, device)
    moving = smooth_volume(size, 2, device)
    eye = torch.eye(3, device=device)[None]
    zero = torch.zeros(1, 3, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def to_working(volume: torch.Tensor) -> torch.Tensor:
        return warp_image(volume, volume_grid, physical_points(working, device=device))

    fixed_w, moving_w = to_working(fixed), to_working(moving)

    def affine():
        return network.affine(fixed_w, working, moving_w, working, eye, zero)

    def deformable(result):
        return network.deformable(fixed_w, working, moving_w, working, result.matrix, result.translation)

    def end_to_end():
        f, m = to_working(fixed), to_working(moving)
        a = network.affine(f, working, m, working, eye, zero)
        phi = network.deformable(f, working, m, working, a.matrix, a.translation).phi
        phi_volume = resample_map(phi, working, volume_grid)
        return warp_image(moving, volume_grid, phi_volume)

    rows = []
    with torch.no_grad():
        affine_ms, affine_result = timed(affine, device, repeats)
        rows.append((f"affine network ({config.network.affine_steps} steps)", affine_ms))
        method_steps = f"{config.network.vsvf_steps} vSVF steps" if config.network.method == "avsm" else "VoxelMorph"
        deformable_ms, _ = timed(lambda: deformable(affine_result), device, repeats)
        rows.append((f"deformable network ({method_steps})", deformable_ms))
        resample_ms, _ = timed(lambda: (to_working(fixed), to_working(moving)), device, repeats)
        rows.append(("resample the pair to the working grid", resample_ms))
        phi = deformable(affine_result).phi
        map_ms, phi_volume = timed(lambda: resample_map(phi, working, volume_grid), device, repeats)
        rows.append(("map to the volume grid", map_ms))
        warp_ms, _ = timed(lambda: warp_image(moving, volume_grid, phi_volume), device, repeats)
        rows.append(("warp the moving volume", warp_ms))
        total_ms, _ = timed(end_to_end, device, repeats)
        rows.append((f"end to end at {spacing:g} mm (all of the above)", total_ms))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = (f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "")
    lines = [f"### {config.network.method} on {name}: volume {'x'.join(map(str, size))} at {spacing:g} mm, working grid "
             f"{'x'.join(map(str, working.shape))} at {config.data.working_spacing_mm:g} mm (median of {repeats}{peak})",
             "", "| stage | ms |", "| --- | ---: |"]
    lines += [f"| {stage} | {ms:.1f} |" for stage, ms in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="training config: [network] and the working grid ([data])")
    parser.add_argument("--model", default=None, help="model.pt or checkpoint whose weights to load (default: random)")
    parser.add_argument("--size", type=int, nargs=3, default=(160, 192, 160), metavar=("D", "H", "W"))
    parser.add_argument("--spacing", type=float, default=1.0, help="mm of the volume grid")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--output", default=None, help="markdown file for the table")
    args = parser.parse_args()
    try:
        if args.repeats < 1 or min(args.size) < 2 or args.spacing <= 0:
            raise AVSMError("--repeats must be >= 1, --size at least 2 voxels a side, --spacing positive")
        table = benchmark(args.config, args.model, tuple(args.size), args.spacing, args.repeats, args.device)
    except AVSMError as error:
        print(f"gpu_speed: error: {error}", file=sys.stderr)
        return 2
    print(table)
    if args.output:
        Path(args.output).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
