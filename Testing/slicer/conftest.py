"""Fixtures for the scene-bridge tests: real MRML scenes (slicer-core) and volume nodes built
from the shared data, downsampled to 3 mm so each registration takes seconds."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE.parents[1] / "AVSMRegistration"
for path in (HERE, MODULE_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
sitk = pytest.importorskip("SimpleITK")

from slicer_test_support import FAKE_ENGINE, add_volume, data_file, downsample  # noqa: E402


@pytest.fixture(scope="session")
def malf_pair():
    """(fixed, moving, fixed_labels, moving_labels) SimpleITK images of malf2012 1010 / 1011 at 3 mm.
    Labels are reduced to 4 large structures so Dice is meaningful at this resolution."""
    images = []
    for subject in ("1010", "1011"):
        image = downsample(sitk.ReadImage(str(data_file("malf2012", f"{subject}_SS.nii.gz"))))
        labels = sitk.ReadImage(str(data_file("malf2012", f"{subject}_glm.nii.gz")))
        array = sitk.GetArrayFromImage(labels)
        coarse = np.zeros_like(array, dtype=np.uint8)
        # cerebral white matter, lateral ventricles, cerebellum cortex, thalamus (Neuromorphometrics ids)
        for value, members in enumerate(((44, 45), (51, 52), (38, 39), (59, 60)), start=1):
            coarse[np.isin(array, members)] = value
        coarse_image = sitk.GetImageFromArray(coarse)
        coarse_image.CopyInformation(labels)
        images.append((image, downsample(coarse_image, labels=True)))
    (fixed, fixed_labels), (moving, moving_labels) = images
    return fixed, moving, fixed_labels, moving_labels


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSubjectHierarchyModuleLogic()  # provides the scene's subject hierarchy
    logic.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()  # the default colour tables label maps refer to
    colors.SetMRMLScene(scene)
    scene.logics = (logic, colors)
    yield scene
    for logic in scene.logics:
        logic.SetMRMLScene(None)
    scene.Clear(1)


@pytest.fixture
def nodes(scene, malf_pair):
    """Volume and label-map nodes of the malf pair, with the moving ones in a subject folder."""
    fixed, moving, fixed_labels, moving_labels = malf_pair
    result = {
        "fixed": add_volume(scene, fixed, "1010"),
        "moving": add_volume(scene, moving, "1011"),
        "fixedLabels": add_volume(scene, fixed_labels, "1010 labels", "vtkMRMLLabelMapVolumeNode"),
        "movingLabels": add_volume(scene, moving_labels, "1011 labels", "vtkMRMLLabelMapVolumeNode"),
    }
    hierarchy = scene.GetSubjectHierarchyNode()
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "subject 1011")
    for key in ("moving", "movingLabels"):
        hierarchy.CreateItem(folder, result[key])
    result["folder"] = folder
    return result


@pytest.fixture
def fake_launcher():
    return [sys.executable, str(FAKE_ENGINE)]
