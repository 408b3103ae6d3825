"""Input checks of AVSMRegistrationLib.validation that concern the scene: the volume proposed as fixed,
and inputs under parent transforms."""
from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk

from AVSMRegistrationLib import RegistrationInputError, input_problem, register_volumes
from AVSMRegistrationLib.validation import default_fixed_volume
from AVSMRegistrationLib.geometry import ijk_to_ras, set_ijk_to_ras
from slicer_test_support import AFFINE_FAST, FAST_AFFINE_ONLY, add_volume


def test_default_fixed_volume_is_never_a_label_map(scene, demo_pair):
    assert default_fixed_volume(scene) is None
    add_volume(scene, demo_pair[2], "labels first", "vtkMRMLLabelMapVolumeNode")
    assert default_fixed_volume(scene) is None
    scalar = add_volume(scene, demo_pair[0], "intensity")
    assert default_fixed_volume(scene) is scalar


def linear_transform(scene, name="shift", translation=(10.0, 0.0, 0.0)):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    matrix = vtk.vtkMatrix4x4()
    for axis, value in enumerate(translation):
        matrix.SetElement(axis, 3, value)
    node.SetMatrixTransformToParent(matrix)
    return node


def grid_transform(scene, name="warp"):
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(3, 3, 3)
    image.SetSpacing(100.0, 100.0, 100.0)
    image.SetOrigin(-100.0, -100.0, -100.0)
    image.AllocateScalars(vtk.VTK_DOUBLE, 3)
    image.GetPointData().GetScalars().Fill(1.0)
    grid = vtk.vtkGridTransform()
    grid.SetDisplacementGridData(image)
    node.SetAndObserveTransformFromParent(grid)
    return node


def test_fixed_volume_under_a_transform_is_refused_by_name(scene, nodes, tmp_path):
    nodes["fixed"].SetAndObserveTransformNodeID(linear_transform(scene).GetID())
    problem = input_problem(nodes["fixed"], nodes["moving"])
    assert problem == ("The fixed volume 'fixed' is under the transform 'shift'; outputs are placed on the fixed grid, "
                       "so harden or remove that transform first (Transforms module).")
    with pytest.raises(RegistrationInputError, match="under the transform 'shift'"):
        register_volumes(nodes["fixed"], nodes["moving"], method="affine", device="cpu", tempRoot=tmp_path,
                         **FAST_AFFINE_ONLY)


def test_moving_volume_under_a_non_linear_transform_is_refused_by_name(scene, nodes):
    nodes["moving"].SetAndObserveTransformNodeID(grid_transform(scene).GetID())
    assert input_problem(nodes["fixed"], nodes["moving"]) == (
        "The moving volume 'moving' is under the non-linear transform 'warp'; harden it first (Transforms module).")


def test_labels_under_another_transform_than_their_volume_are_refused(scene, nodes):
    nodes["moving"].SetAndObserveTransformNodeID(linear_transform(scene).GetID())
    problem = input_problem(nodes["fixed"], nodes["moving"], movingLabels=nodes["movingLabels"])
    assert problem.startswith("The moving labels 'moving labels' are not under the same transform")
    nodes["movingLabels"].SetAndObserveTransformNodeID(nodes["moving"].GetTransformNodeID())
    assert input_problem(nodes["fixed"], nodes["moving"], movingLabels=nodes["movingLabels"]) is None


def test_moving_volume_under_a_linear_transform_is_registered_where_it_is_shown(scene, known_nodes, known_pair,
                                                                              tmp_path):
    """The known pair, with the moving voxels stored 10 mm off and a parent transform putting them back:
    the result must be the known transform, as without the parent (not off by 10 mm)."""
    moving = known_nodes["moving"]
    shifted = ijk_to_ras(moving)
    shifted[0, 3] -= 10.0
    set_ijk_to_ras(moving, shifted)
    moving.SetAndObserveTransformNodeID(linear_transform(scene, translation=(10.0, 0.0, 0.0)).GetID())
    voxels = slicer.util.arrayFromVolume(moving).copy()
    result = register_volumes(known_nodes["fixed"], moving, method="affine", device="cpu", tempRoot=tmp_path,
                              outputWarpedLabels=False, outputJacobian=False, outputFolds=False, **AFFINE_FAST)
    to_parent = slicer.util.arrayFromTransformMatrix(result.affine, toWorld=True)
    expected = known_pair.expected_to_parent_ras()
    np.testing.assert_allclose(to_parent[:3, :3], expected[:3, :3], atol=0.02)
    np.testing.assert_allclose(to_parent[:3, 3], expected[:3, 3], atol=1.0)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(moving), voxels)  # the input itself is not hardened
    assert moving.GetParentTransformNode().GetName() == "shift"

