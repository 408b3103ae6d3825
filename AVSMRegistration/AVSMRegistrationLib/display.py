"""How the outputs look: the det(J) colour table centred on 1, the fold colours, the deformation grid."""
from __future__ import annotations

import numpy as np

import slicer

from .options import GRID_SPACING_MM

COLOR_ATTRIBUTE = "AVSMRegistration.ColorTable"
JACOBIAN_COLORS = "detJ"
FOLD_COLORS = "folds"

_BLUE = np.array([0.23, 0.30, 0.75])
_WHITE = np.array([1.0, 1.0, 1.0])
_RED = np.array([0.71, 0.02, 0.15])


def diverging_color(fraction: float) -> tuple[float, float, float]:
    """Blue (0) -> white (0.5) -> red (1): shrinking -> volume kept -> expanding."""
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < 0.5:
        return tuple(_BLUE + (_WHITE - _BLUE) * (fraction / 0.5))
    return tuple(_WHITE + (_RED - _WHITE) * ((fraction - 0.5) / 0.5))


def _find_color_table(scene, kind: str):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLColorTableNode")
        if node.GetAttribute(COLOR_ATTRIBUTE) == kind:
            return node
    return None


def _new_color_table(scene, kind: str, name: str, colors: list[tuple[str, tuple[float, float, float, float]]]):
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", scene.GenerateUniqueName(name))
    table.SetTypeToUser()
    table.SetNumberOfColors(len(colors))
    for index, (label, rgba) in enumerate(colors):
        table.SetColor(index, label, *rgba)
    table.SetAttribute(COLOR_ATTRIBUTE, kind)
    table.SetHideFromEditors(False)
    return table


def jacobian_color_table(scene):
    """The scene's diverging det(J) table (created once, then reused)."""
    table = _find_color_table(scene, JACOBIAN_COLORS)
    if table is None:
        count = 257  # odd, so that entry 128 is exactly white
        colors = [(f"{2.0 * i / (count - 1):.3f}", (*diverging_color(i / (count - 1)), 1.0)) for i in range(count)]
        table = _new_color_table(scene, JACOBIAN_COLORS, "AVSM det(J) diverging", colors)
    return table


def fold_color_table(scene):
    table = _find_color_table(scene, FOLD_COLORS)
    if table is None:
        table = _new_color_table(scene, FOLD_COLORS, "AVSM folds",
                                 [("background", (0.0, 0.0, 0.0, 0.0)), ("fold det(J) <= 0", (1.0, 0.85, 0.0, 1.0))])
    return table


def jacobian_window(det_min: float, det_max: float) -> tuple[float, float]:
    """(window, level) centred on det(J) = 1 that shows the whole range symmetrically."""
    half = max(abs(1.0 - det_min), abs(det_max - 1.0), 0.05)
    return 2.0 * half, 1.0


def show_jacobian(volume, det_min: float, det_max: float) -> None:
    volume.CreateDefaultDisplayNodes()
    display = volume.GetDisplayNode()
    display.SetAndObserveColorNodeID(jacobian_color_table(volume.GetScene()).GetID())
    display.AutoWindowLevelOff()
    window, level = jacobian_window(det_min, det_max)
    display.SetWindowLevel(window, level)
    display.SetInterpolate(False)


def show_folds(label_map) -> None:
    label_map.CreateDefaultDisplayNodes()
    label_map.GetDisplayNode().SetAndObserveColorNodeID(fold_color_table(label_map.GetScene()).GetID())


def show_grid(transform, region, visible: bool, spacing_mm: float = GRID_SPACING_MM) -> None:
    """Display the transform as a deformed grid over `region` (the fixed volume) in the slice views."""
    transform.CreateDefaultDisplayNodes()
    display = transform.GetDisplayNode()
    display.SetVisualizationMode(slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GRID)
    display.SetGridSpacingMm(spacing_mm)
    display.SetAndObserveRegionNode(region)
    display.SetVisibility2D(visible)
    display.SetVisibility3D(False)
    display.SetVisibility(visible)
