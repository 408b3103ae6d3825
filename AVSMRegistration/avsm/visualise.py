"""grid.png: three orthogonal centre slices of fixed, warped, warped with the deformation grid, det J, the
intensity difference before and after registration, and the label outlines.

Drawn with Pillow (arrays composed in numpy, no plotting library): the figure costs tens of
milliseconds, where a matplotlib figure with contour lines cost about a second in a fresh process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL_PX = 200  # longest side of one slice panel
GAP_PX = 4  # between panels, and below each row
ROW_TITLE_PX = 16  # title strip above each row
COLUMN_TITLE_PX = 20  # column titles above the first row
HEADER_PX = 20  # figure title, above the legend lines
LEGEND_LINE_PX = 16
SIDE_PX = 4  # left and right margins
FONT_PX = 12
GRID_COLOUR = (255, 220, 0)
FOLD_COLOUR = (0, 0, 0)
WARPED_LABEL_COLOUR = (0, 230, 255)  # cyan: outlines of the warped moving labels (1 pixel, drawn on top)
FIXED_LABEL_COLOUR = (255, 40, 200)  # magenta: outlines of the fixed labels (2 pixels, straddling the boundary)
# |difference| of the intensities, each divided by its 99.5th percentile: black (0) to pale yellow (DIFF_MAX and
# above), one scale for the before and after rows
DIFF_MAX = 0.5
_DIFF_ANCHORS = np.array([[0, 0, 4], [120, 28, 109], [237, 105, 37], [252, 255, 164]], dtype=np.float64)
FIXED_TITLE, WARPED_TITLE, GRID_TITLE = "fixed", "warped moving", "deformation grid (yellow)"
DET_TITLE = "det J (blue 0 .. white 1 .. red 2, folds black)"
BEFORE_TITLE, AFTER_TITLE = "before: |fixed - moving|", "after: |fixed - warped|"
LABELS_TITLE = "labels: warped (cyan) / fixed (magenta)"
COLUMN_TITLES = ("axial", "coronal", "sagittal")
# blue (det J = 0, compression) -> white (1, volume kept) -> red (2, expansion)
_DET_ANCHORS = np.array([[33, 102, 172], [247, 247, 247], [178, 24, 43]], dtype=np.float64)


def _font(size: int = FONT_PX):
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _slices(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    z, y, x = centre
    return [volume[z], volume[:, y], volume[:, :, x]]


def _resize(plane: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Bilinear float resize of a 2-D array to (width, height) pixels."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F").resize(size_wh, Image.BILINEAR))


def _resize_labels(plane: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D label array to (width, height) pixels."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.int32), mode="I").resize(size_wh, Image.NEAREST))


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


def label_boundaries(labels: np.ndarray, both_sides: bool = True) -> np.ndarray:
    """Pixels of a 2-D label array whose label differs from a 4-neighbour's; ``both_sides=False`` keeps only the
    pixel before each change (left/above), a line one pixel thin."""
    edges = np.zeros(labels.shape, dtype=bool)
    across = labels[:, :-1] != labels[:, 1:]
    down = labels[:-1, :] != labels[1:, :]
    edges[:, :-1] |= across
    edges[:-1, :] |= down
    if both_sides:
        edges[:, 1:] |= across
        edges[1:, :] |= down
    return edges


def _det_colours(det: np.ndarray) -> np.ndarray:
    """Diverging colours for det J on [0, 2]; folds (det J <= 0) black."""
    t = np.clip(det, 0.0, 2.0)
    low = np.clip(t, 0.0, 1.0)[..., None]
    high = np.clip(t - 1.0, 0.0, 1.0)[..., None]
    rgb = np.where(t[..., None] <= 1.0, _DET_ANCHORS[0] + low * (_DET_ANCHORS[1] - _DET_ANCHORS[0]),
                   _DET_ANCHORS[1] + high * (_DET_ANCHORS[2] - _DET_ANCHORS[1]))
    rgb[det <= 0] = FOLD_COLOUR
    return rgb.astype(np.uint8)


def _diff_colours(diff: np.ndarray) -> np.ndarray:
    """Sequential colours for |difference| on [0, DIFF_MAX]: black, purple, orange, pale yellow."""
    t = np.clip(diff / DIFF_MAX, 0.0, 1.0) * (len(_DIFF_ANCHORS) - 1)
    index = np.minimum(t.astype(np.int64), len(_DIFF_ANCHORS) - 2)
    frac = (t - index)[..., None]
    return (_DIFF_ANCHORS[index] + frac * (_DIFF_ANCHORS[index + 1] - _DIFF_ANCHORS[index])).astype(np.uint8)


def overview_rows(fixed: np.ndarray, warped: np.ndarray, map_planes: list | None, det_jacobian: np.ndarray,
                  spacing_zyx: tuple[float, float, float], grid_step_mm: float = 10.0,
                  before: Optional[np.ndarray] = None, warped_labels: Optional[np.ndarray] = None,
                  fixed_labels: Optional[np.ndarray] = None) -> list[tuple[str, list[np.ndarray]]]:
    """The figure's rows as (title, [axial, coronal, sagittal RGB panels]), panels upright (array row 0 at the bottom).

    Rows: fixed, warped, warped + deformed grid, det J; with ``before`` (the moving image on the fixed grid
    before registration) the intensity difference before and after; with either label map the label outlines
    over the fixed image. The differences compare each image divided by its 99.5th percentile (the moving
    side by the warped image's, so that before and after share one scale).
    """
    centre = tuple(int(n // 2) for n in fixed.shape)
    planes = [(1, 2), (0, 2), (0, 1)]  # array axes (rows, columns) of each view
    vmax = float(np.percentile(fixed, 99.5)) or 1.0
    wmax = float(np.percentile(warped, 99.5)) or 1.0
    titles = [FIXED_TITLE, WARPED_TITLE, GRID_TITLE, DET_TITLE]
    if before is not None:
        titles += [BEFORE_TITLE, AFTER_TITLE]
    with_labels = warped_labels is not None or fixed_labels is not None
    if with_labels:
        titles.append(LABELS_TITLE)
    columns = []
    for view in range(3):
        a, b = planes[view]
        fixed_s, warped_s, det_s = (_slices(v, centre)[view] for v in (fixed, warped, det_jacobian))
        height_mm, width_mm = fixed.shape[a] * spacing_zyx[a], fixed.shape[b] * spacing_zyx[b]
        scale = PANEL_PX / max(height_mm, width_mm)
        size_wh = (max(int(round(width_mm * scale)), 1), max(int(round(height_mm * scale)), 1))
        if map_planes is None:
            row_map, col_map = np.meshgrid(np.arange(fixed.shape[a], dtype=np.float32),
                                           np.arange(fixed.shape[b], dtype=np.float32), indexing="ij")
        else:
            row_map, col_map = map_planes[view][a], map_planes[view][b]
        fixed_px, warped_px = _resize(fixed_s, size_wh), _resize(warped_s, size_wh)
        fixed_rgb, warped_rgb = _grey(fixed_px, vmax), _grey(warped_px, wmax)
        with_grid = warped_rgb.copy()
        lines = (_iso_lines(_resize(row_map, size_wh), max(grid_step_mm / spacing_zyx[a], 1.0))
                 | _iso_lines(_resize(col_map, size_wh), max(grid_step_mm / spacing_zyx[b], 1.0)))
        with_grid[lines] = GRID_COLOUR
        column = [fixed_rgb, warped_rgb, with_grid, _det_colours(_resize(det_s, size_wh))]
        if before is not None:
            before_px = _resize(_slices(before, centre)[view], size_wh)
            column.append(_diff_colours(np.abs(fixed_px / vmax - before_px / wmax)))
            column.append(_diff_colours(np.abs(fixed_px / vmax - warped_px / wmax)))
        if with_labels:
            outlined = fixed_rgb.copy()
            if fixed_labels is not None:
                outlined[label_boundaries(_resize_labels(_slices(fixed_labels, centre)[view], size_wh))] = FIXED_LABEL_COLOUR
            if warped_labels is not None:
                warped_edges = label_boundaries(_resize_labels(_slices(warped_labels, centre)[view], size_wh),
                                                both_sides=fixed_labels is None)
                outlined[warped_edges] = WARPED_LABEL_COLOUR
            column.append(outlined)
        columns.append([np.flipud(p) for p in column])  # array row 0 (inferior / posterior) at the bottom
    return [(title, [columns[view][row] for view in range(3)]) for row, title in enumerate(titles)]


def _swatch_width(colour) -> int:
    return colour.shape[1] if isinstance(colour, np.ndarray) else 11


def _legend_lines(entries, font, width: int) -> list[list]:
    """The legend entries wrapped into lines of at most ``width`` pixels."""
    lines: list[list] = [[]]
    used = 0
    for colour, text in entries:
        need = _swatch_width(colour) + 4 + int(font.getlength(text)) + 12
        if lines[-1] and used + need > width:
            lines.append([])
            used = 0
        lines[-1].append((colour, text))
        used += need
    return lines


def _draw_legend_line(figure: Image.Image, xy: tuple[int, int], font, entries) -> None:
    """Swatches and their text; an entry's colour is an RGB triple or an h x w x 3 array (a colour bar)."""
    draw = ImageDraw.Draw(figure)
    x, y = xy
    for colour, text in entries:
        swatch = _swatch_width(colour)
        if isinstance(colour, np.ndarray):
            figure.paste(Image.fromarray(colour), (x, y + 2))
            draw.rectangle((x, y + 2, x + swatch - 1, y + 1 + colour.shape[0]), outline="black")
        else:
            draw.rectangle((x, y + 2, x + swatch - 1, y + 12), fill=colour, outline="black")
        draw.text((x + swatch + 4, y), text, fill="black", font=font)
        x += swatch + 4 + int(draw.textlength(text, font=font)) + 12


def compose_overview(rows: list[tuple[str, list[np.ndarray]]], title: str, legend: list) -> Image.Image:
    """Lay the rows out under a title line, the legend lines and the column titles; each row under its title."""
    widths = [panel.shape[1] for panel in rows[0][1]]
    heights = [max(panel.shape[0] for panel in panels) for _, panels in rows]
    width = 2 * SIDE_PX + sum(widths) + GAP_PX * (len(widths) - 1)
    font, bold = _font(), _font(FONT_PX + 2)
    legend_lines = _legend_lines(legend, font, width - 2 * SIDE_PX)
    header = HEADER_PX + LEGEND_LINE_PX * len(legend_lines)
    height = header + COLUMN_TITLE_PX + sum(heights) + len(rows) * (ROW_TITLE_PX + GAP_PX)
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    draw.text((SIDE_PX, 2), title, fill="black", font=bold)
    for line, entries in enumerate(legend_lines):
        _draw_legend_line(figure, (SIDE_PX, HEADER_PX + LEGEND_LINE_PX * line), font, entries)
    x = SIDE_PX
    for view, view_width in enumerate(widths):
        draw.text((x + view_width // 2, header + 1), COLUMN_TITLES[view], fill="black", font=bold, anchor="mt")
        x += view_width + GAP_PX
    y = header + COLUMN_TITLE_PX
    for (row_title, panels), row_height in zip(rows, heights):
        draw.text((SIDE_PX, y + 1), row_title, fill="black", font=font)
        y += ROW_TITLE_PX
        x = SIDE_PX
        for panel, view_width in zip(panels, widths):
            figure.paste(Image.fromarray(np.ascontiguousarray(panel)), (x, y))
            x += view_width + GAP_PX
        y += row_height + GAP_PX
    return figure


def save_overview(path: Path, fixed: np.ndarray, warped: np.ndarray, map_planes: list | None,
                  det_jacobian: np.ndarray, spacing_zyx: tuple[float, float, float], grid_step_mm: float = 10.0,
                  before: Optional[np.ndarray] = None, warped_labels: Optional[np.ndarray] = None,
                  fixed_labels: Optional[np.ndarray] = None) -> None:
    """Write the overview figure: columns the axial, coronal and sagittal centre slices, drawn with their
    physical aspect, array row 0 at the bottom; rows as ``overview_rows`` lists them (4 to 7).

    ``fixed``/``warped``/``det_jacobian`` (and ``before``, ``warped_labels``, ``fixed_labels``) are D x H x W
    arrays on the fixed grid; ``map_planes`` holds, for the centre slices, the pull-back map in fixed voxel
    indices (z, y, x) as 3 x h x w arrays, so that its level lines every ``grid_step_mm`` are the deformed
    grid. ``None`` draws the identity grid.
    """
    rows = overview_rows(fixed, warped, map_planes, det_jacobian, spacing_zyx, grid_step_mm,
                         before, warped_labels, fixed_labels)
    legend = [(GRID_COLOUR, f"grid every {grid_step_mm:g} mm")]
    if before is not None:
        bar = _diff_colours(np.repeat(np.linspace(0.0, DIFF_MAX, 40)[None], 11, axis=0))
        legend.append((bar, f"|difference| 0 .. {DIFF_MAX:g}, before = moving with the identity transform"))
    if warped_labels is not None:
        legend.append((WARPED_LABEL_COLOUR, "warped labels"))
    if fixed_labels is not None:
        legend.append((FIXED_LABEL_COLOUR, "fixed labels"))
    figure = compose_overview(rows, "avsm overview: centre slices on the fixed grid", legend)
    figure.save(path, compress_level=3)  # half the time of the default level 6 for 1 % more bytes
