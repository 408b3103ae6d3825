"""grid.png: three orthogonal slices of fixed, warped, warped with the deformation grid, and det J.

Drawn with Pillow (arrays composed in numpy, no plotting library): the figure costs tens of
milliseconds, where a matplotlib figure with contour lines cost about a second in a fresh process.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PANEL_PX = 200  # longest side of one slice panel
MARGIN_PX = 18  # room for the row and column titles
GRID_COLOUR = (255, 220, 0)
FOLD_COLOUR = (0, 0, 0)
ROW_TITLES = ("fixed", "warped moving", "deformation grid", "det J (0..2, folds black)")
COLUMN_TITLES = ("axial", "coronal", "sagittal")
# blue (det J = 0, compression) -> white (1, volume kept) -> red (2, expansion)
_DET_ANCHORS = np.array([[33, 102, 172], [247, 247, 247], [178, 24, 43]], dtype=np.float64)


def _slices(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    z, y, x = centre
    return [volume[z], volume[:, y], volume[:, :, x]]


def _resize(plane: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Bilinear float resize of a 2-D array to (width, height) pixels."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F").resize(size_wh, Image.BILINEAR))


def _grey(plane: np.ndarray, vmax: float) -> np.ndarray:
    grey = (np.clip(plane / vmax, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _iso_lines(coordinate: np.ndarray, step: float) -> np.ndarray:
    """Pixels where ``floor(coordinate / step)`` changes to the next pixel: the level lines of a map channel."""
    band = np.floor(coordinate / step)
    lines = np.zeros(coordinate.shape, dtype=bool)
    lines[:, :-1] |= band[:, :-1] != band[:, 1:]
    lines[:-1, :] |= band[:-1, :] != band[1:, :]
    return lines


def _det_colours(det: np.ndarray) -> np.ndarray:
    """Diverging colours for det J on [0, 2]; folds (det J <= 0) black."""
    t = np.clip(det, 0.0, 2.0)
    low = np.clip(t, 0.0, 1.0)[..., None]
    high = np.clip(t - 1.0, 0.0, 1.0)[..., None]
    rgb = np.where(t[..., None] <= 1.0, _DET_ANCHORS[0] + low * (_DET_ANCHORS[1] - _DET_ANCHORS[0]),
                   _DET_ANCHORS[1] + high * (_DET_ANCHORS[2] - _DET_ANCHORS[1]))
    rgb[det <= 0] = FOLD_COLOUR
    return rgb.astype(np.uint8)


def save_overview(path: Path, fixed: np.ndarray, warped: np.ndarray, map_planes: list | None,
                  det_jacobian: np.ndarray, spacing_zyx: tuple[float, float, float], grid_step_mm: float = 10.0) -> None:
    """Write the 4 x 3 overview figure (rows: fixed, warped, warped + deformed grid, det J; columns:
    the axial, coronal and sagittal centre slices, drawn with their physical aspect, array row 0 at the bottom).

    ``fixed``/``warped``/``det_jacobian`` are D x H x W arrays on the fixed grid; ``map_planes`` holds, for
    the centre slices, the pull-back map in fixed voxel indices (z, y, x) as 3 x h x w arrays, so that its
    level lines every ``grid_step_mm`` are the deformed grid. ``None`` draws the identity grid.
    """
    centre = tuple(int(n // 2) for n in fixed.shape)
    planes = [(1, 2), (0, 2), (0, 1)]  # array axes (rows, columns) of each view
    vmax = float(np.percentile(fixed, 99.5)) or 1.0
    wmax = float(np.percentile(warped, 99.5)) or 1.0
    panels = []  # 3 columns of 4 RGB panels
    for view, (fixed_s, warped_s, det_s) in enumerate(zip(_slices(fixed, centre), _slices(warped, centre),
                                                           _slices(det_jacobian, centre))):
        a, b = planes[view]
        height_mm, width_mm = fixed.shape[a] * spacing_zyx[a], fixed.shape[b] * spacing_zyx[b]
        scale = PANEL_PX / max(height_mm, width_mm)
        size_wh = (max(int(round(width_mm * scale)), 1), max(int(round(height_mm * scale)), 1))
        if map_planes is None:
            row_map, col_map = np.meshgrid(np.arange(fixed.shape[a], dtype=np.float32),
                                           np.arange(fixed.shape[b], dtype=np.float32), indexing="ij")
        else:
            row_map, col_map = map_planes[view][a], map_planes[view][b]
        warped_rgb = _grey(_resize(warped_s, size_wh), wmax)
        with_grid = warped_rgb.copy()
        lines = (_iso_lines(_resize(row_map, size_wh), max(grid_step_mm / spacing_zyx[a], 1.0))
                 | _iso_lines(_resize(col_map, size_wh), max(grid_step_mm / spacing_zyx[b], 1.0)))
        with_grid[lines] = GRID_COLOUR
        column = [_grey(_resize(fixed_s, size_wh), vmax), warped_rgb, with_grid, _det_colours(_resize(det_s, size_wh))]
        panels.append([np.flipud(p) for p in column])  # array row 0 (inferior / posterior) at the bottom
    widths = [column[0].shape[1] for column in panels]
    heights = [max(panels[v][row].shape[0] for v in range(3)) for row in range(4)]
    figure = Image.new("RGB", (MARGIN_PX + sum(widths) + 4 * 3, MARGIN_PX + sum(heights) + 4 * 4), "white")
    draw = ImageDraw.Draw(figure)
    x = MARGIN_PX
    for view, column in enumerate(panels):
        draw.text((x + 2, 3), COLUMN_TITLES[view], fill="black")
        y = MARGIN_PX
        for row, panel in enumerate(column):
            figure.paste(Image.fromarray(np.ascontiguousarray(panel)), (x, y))
            y += heights[row] + 4
        x += widths[view] + 4
    y = MARGIN_PX
    for row, title in enumerate(ROW_TITLES):
        label = Image.new("RGB", (heights[row], MARGIN_PX - 4), "white")
        ImageDraw.Draw(label).text((2, 1), title, fill="black")
        figure.paste(label.rotate(90, expand=True), (1, y))
        y += heights[row] + 4
    figure.save(path, optimize=False)
