"""grid.png: three orthogonal slices of fixed, warped, warped with the deformation grid, and det J."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _slices(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    z, y, x = centre
    return [volume[z], volume[:, y], volume[:, :, x]]


def save_overview(path: Path, fixed: np.ndarray, warped: np.ndarray, map_planes: list | None,
                  det_jacobian: np.ndarray, spacing_zyx: tuple[float, float, float], grid_step_mm: float = 10.0) -> None:
    """Write the 4 x 3 overview figure.

    ``fixed``/``warped``/``det_jacobian`` are D x H x W arrays on the fixed grid; ``map_planes`` holds, for
    the centre slices (axial, coronal, sagittal), the pull-back map in voxel indices (z, y, x) as
    3 x h x w arrays, so that iso-lines of the map are the deformed grid. ``None`` draws the identity grid.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centre = tuple(int(n // 2) for n in fixed.shape)
    fixed_s = _slices(fixed, centre)
    warped_s = _slices(warped, centre)
    det_s = _slices(det_jacobian, centre)
    # in-plane axes for each view, as array axes
    planes = [(1, 2), (0, 2), (0, 1)]
    aspect = [spacing_zyx[1] / spacing_zyx[2], spacing_zyx[0] / spacing_zyx[2], spacing_zyx[0] / spacing_zyx[1]]
    vmax = float(np.percentile(fixed, 99.5)) or 1.0
    wmax = float(np.percentile(warped, 99.5)) or 1.0
    fig, axes = plt.subplots(4, 3, figsize=(9, 12))
    for col in range(3):
        axes[0, col].imshow(fixed_s[col], cmap="gray", vmin=0, vmax=vmax, aspect=aspect[col], origin="lower")
        axes[1, col].imshow(warped_s[col], cmap="gray", vmin=0, vmax=wmax, aspect=aspect[col], origin="lower")
        axes[2, col].imshow(warped_s[col], cmap="gray", vmin=0, vmax=wmax, aspect=aspect[col], origin="lower")
        a, b = planes[col]
        if map_planes is None:
            row_map, col_map = np.meshgrid(np.arange(fixed.shape[a]), np.arange(fixed.shape[b]), indexing="ij")
        else:
            row_map, col_map = map_planes[col][a], map_planes[col][b]
        step_a = max(int(round(grid_step_mm / spacing_zyx[a])), 1)
        step_b = max(int(round(grid_step_mm / spacing_zyx[b])), 1)
        levels_a = np.arange(0, fixed.shape[a], step_a)
        levels_b = np.arange(0, fixed.shape[b], step_b)
        axes[2, col].contour(row_map, levels=levels_a, colors="yellow", linewidths=0.5)
        axes[2, col].contour(col_map, levels=levels_b, colors="yellow", linewidths=0.5)
        image = axes[3, col].imshow(det_s[col], cmap="RdBu_r", vmin=0, vmax=2, aspect=aspect[col], origin="lower")
    for row, title in enumerate(["fixed", "warped moving", "deformation grid", "det J (0..2)"]):
        axes[row, 0].set_ylabel(title)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[3].tolist(), shrink=0.8)
    fig.savefig(path, dpi=80)
    plt.close(fig)
