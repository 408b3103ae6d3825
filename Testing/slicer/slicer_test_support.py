"""Helpers shared by the scene-bridge tests (fixtures live in conftest.py).

Every test runs the real `avsm` engine on real images: the demo pair bundled with the engine
(AVSMRegistration/avsm/sample_data, 2 mm, resampled to 4 mm here) and, for the known-answer
checks, a moving volume made from the fixed one by a known physical transform (`known_pair`).
The few tests that need ../shared/data skip with the reason when it is absent.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "AVSMRegistration"
SAMPLE_DATA = MODULE_DIR / "avsm" / "sample_data"
DATA = REPO / ".." / "shared" / "data"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from AVSMRegistrationLib.geometry import update_volume_from_image  # noqa: E402

TEST_SPACING_MM = 4.0
"""Grid of the test volumes: registrations take a second or two on 2 CPU threads."""

FAST_AFFINE_ONLY = dict(affineIterations=15, workingSpacing=6.0)
"""Engine settings of the affine method for tests that check the scene, not accuracy."""

FAST = dict(FAST_AFFINE_ONLY, vsvfIterations=4)
"""The same for vsvf-opt."""

AFFINE_FAST = dict(affineIterations=20, workingSpacing=4.0)
"""Affine settings that still recover the known transform to a fraction of a millimetre."""

LPS_RAS = np.diag([-1.0, -1.0, 1.0])


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


def physical_points(image) -> np.ndarray:
    """LPS coordinates of every voxel centre, shape (z, y, x, 3) like the numpy view."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float)
    matrix = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    return index @ matrix.T + np.array(image.GetOrigin())


def quadrant_labels(mask) -> sitk.Image:
    """A brain mask split into 4 labels at its centre of mass (left/right x inferior/superior),
    so Dice and segment handling have several labels to work with."""
    array = sitk.GetArrayFromImage(mask) > 0
    points = physical_points(mask)
    centre = points[array].mean(axis=0)
    right = points[..., 0] < centre[0]          # LPS: x grows to the left
    superior = points[..., 2] > centre[2]
    labels = np.where(array, 1 + right.astype(np.uint8) + 2 * superior.astype(np.uint8), 0).astype(np.uint8)
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(mask)
    return image


def load_demo_pair():
    """(fixed, moving, fixed_labels, moving_labels) of the bundled demo pair at TEST_SPACING_MM.
    fixed: open_ms patient07 T1 (axial); moving: IXI002 T1 in its native oblique space."""
    result = []
    for role in ("fixed", "moving"):
        image = downsample(sitk.ReadImage(str(SAMPLE_DATA / f"{role}_t1_2mm.nii.gz")))
        mask = sitk.ReadImage(str(SAMPLE_DATA / f"{role}_brainmask_2mm.nii.gz"))
        result.append((image, downsample(quadrant_labels(mask), labels=True)))
    (fixed, fixed_labels), (moving, moving_labels) = result
    return fixed, moving, fixed_labels, moving_labels


@dataclass
class KnownPair:
    """A moving volume made from the fixed one: moving(q) = fixed(S(q)) on an oblique, anisotropic
    grid, so the engine's transform (fixed -> moving points) must be S^-1 and Slicer's affine
    ToParent (moving RAS -> fixed RAS) must be F S F with F = diag(-1, -1, 1)."""

    fixed: sitk.Image
    moving: sitk.Image
    fixed_labels: sitk.Image
    moving_labels: sitk.Image
    known: sitk.Euler3DTransform   # S, LPS

    def expected_to_parent_ras(self) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3, :3] = LPS_RAS @ np.array(self.known.GetMatrix()).reshape(3, 3) @ LPS_RAS
        # S(x) = R (x - c) + c + t
        centre, translation = np.array(self.known.GetCenter()), np.array(self.known.GetTranslation())
        offset = -np.array(self.known.GetMatrix()).reshape(3, 3) @ centre + centre + translation
        matrix[:3, 3] = LPS_RAS @ offset
        return matrix


KNOWN_ROTATION_DEG = 5.0             # about the LPS z axis, through the centre of the fixed volume
KNOWN_TRANSLATION_MM = (6.0, -4.0, 3.0)  # LPS


def make_known_pair(fixed: sitk.Image, fixed_labels: sitk.Image) -> KnownPair:
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
    known = sitk.Euler3DTransform()
    known.SetCenter(centre)
    known.SetRotation(0.0, 0.0, np.deg2rad(KNOWN_ROTATION_DEG))
    known.SetTranslation(KNOWN_TRANSLATION_MM)
    # an oblique, anisotropic moving grid around the same centre
    tilt = sitk.VersorTransform((0.3, -0.5, 0.8), 0.3)
    grid = sitk.Image([52, 50, 40], sitk.sitkFloat32)
    grid.SetSpacing((4.0, 4.5, 5.0))
    grid.SetDirection(tilt.GetMatrix())
    half = np.array(tilt.GetMatrix()).reshape(3, 3) @ (np.array(grid.GetSpacing()) * (np.array(grid.GetSize()) - 1) / 2)
    grid.SetOrigin((np.array(centre) - half).tolist())
    moving = sitk.Resample(fixed, grid, known, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    moving_labels = sitk.Resample(fixed_labels, grid, known, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return KnownPair(fixed, moving, fixed_labels, moving_labels, known)


def make_scene():
    import slicer

    scene = slicer.vtkMRMLScene()
    hierarchy = slicer.vtkSlicerSubjectHierarchyModuleLogic()  # provides the scene's subject hierarchy
    hierarchy.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()  # the default colour tables label maps refer to
    colors.SetMRMLScene(scene)
    scene.logics = (hierarchy, colors)
    return scene


def close_scene(scene) -> None:
    for logic in scene.logics:
        logic.SetMRMLScene(None)
    scene.Clear(1)


def add_volume(scene, image, name: str, cls: str = "vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(cls, name)
    update_volume_from_image(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def add_pair(scene, fixed, moving, fixed_labels, moving_labels, fixed_name="fixed", moving_name="moving") -> dict:
    """Volume and label-map nodes of a pair, with the moving ones in a subject folder."""
    result = {
        "fixed": add_volume(scene, fixed, fixed_name),
        "moving": add_volume(scene, moving, moving_name),
        "fixedLabels": add_volume(scene, fixed_labels, f"{fixed_name} labels", "vtkMRMLLabelMapVolumeNode"),
        "movingLabels": add_volume(scene, moving_labels, f"{moving_name} labels", "vtkMRMLLabelMapVolumeNode"),
    }
    hierarchy = scene.GetSubjectHierarchyNode()
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), f"subject {moving_name}")
    for key in ("moving", "movingLabels"):
        hierarchy.CreateItem(folder, result[key])
    result["folder"] = folder
    return result


def scene_state(scene) -> list[tuple[str, str, int]]:
    """Node IDs, classes and modification times: equal before and after means nothing changed."""
    state = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        state.append((node.GetID(), node.GetClassName(), node.GetMTime()))
    return state


def hardened_on_fixed_grid(scene, moving, transform, fixed) -> np.ndarray:
    """Harden `transform` on a copy of `moving` (Slicer resamples it), then read it on the fixed grid."""
    import slicer  # noqa: F401  (slicer-core)
    from AVSMRegistrationLib.geometry import ijk_to_ras, image_from_volume, set_ijk_to_ras

    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "moving copy")
    copy.SetAndObserveImageData(moving.GetImageData())
    set_ijk_to_ras(copy, ijk_to_ras(moving))
    copy.SetAndObserveTransformNodeID(transform.GetID())
    assert copy.HardenTransform()
    hardened = image_from_volume(copy, sitk.sitkFloat32)
    on_fixed = sitk.Resample(hardened, image_from_volume(fixed), sitk.Transform(), sitk.sitkLinear, 0.0)
    scene.RemoveNode(copy)
    return sitk.GetArrayFromImage(on_fixed)


def s4ext_entries() -> dict[str, str]:
    """The extension description file (AVSMRegistration.s4ext) as key -> value."""
    entries = {}
    for line in (REPO / "AVSMRegistration.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            entries[key] = value.strip()
    return entries
