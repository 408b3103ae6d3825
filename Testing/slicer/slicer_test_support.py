"""Helpers shared by the scene-bridge tests (fixtures live in conftest.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "AVSMRegistration"
DATA = REPO / ".." / "shared" / "data"
FAKE_ENGINE = Path(__file__).resolve().parent / "fake_engine.py"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from AVSMRegistrationLib.geometry import update_volume_from_image  # noqa: E402

TEST_SPACING_MM = 3.0


def data_file(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (expected ../shared/data next to the repository)")
    return path


def downsample(image, spacing: float = TEST_SPACING_MM, labels: bool = False):
    """Resample onto a grid of `spacing` mm covering the same physical box (same direction)."""
    old_spacing = np.array(image.GetSpacing())
    old_size = np.array(image.GetSize())
    new_size = np.maximum(np.round(old_size * old_spacing / spacing), 4).astype(int)
    if labels:
        interpolator = sitk.sitkNearestNeighbor
    else:
        image = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), spacing / 2.0)
        interpolator = sitk.sitkLinear
    return sitk.Resample(image, [int(s) for s in new_size], sitk.Transform(), interpolator, image.GetOrigin(),
                         [spacing] * 3, image.GetDirection(), 0, image.GetPixelID())


def add_volume(scene, image, name: str, cls: str = "vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(cls, name)
    update_volume_from_image(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def scene_state(scene) -> list[tuple[str, str, int]]:
    """Node IDs, classes and modification times: equal before and after means nothing changed."""
    state = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        state.append((node.GetID(), node.GetClassName(), node.GetMTime()))
    return state
