"""Masks and an initial transform from the scene to the engine (AVSMRegistrationLib.labels.mask_image,
geometry.engine_transform_from_node, validation, engine): the transform node's matrix in Slicer's sense
becomes the engine's fixed -> moving LPS transform and comes back unchanged, masks reach the engine as
label maps or segmentations, and unusable ones are refused by name before the engine starts."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from AVSMRegistrationLib import RegistrationInputError, input_problem, register_volumes
from AVSMRegistrationLib.engine import EngineProcess
from AVSMRegistrationLib.geometry import engine_transform_from_node
from AVSMRegistrationLib.labels import mask_image
from AVSMRegistrationLib.options import RegistrationOptions
from AVSMRegistrationLib.outputs import _load_transform
from AVSMRegistrationLib.registration import RegistrationJob
from avsm.imageio import read_linear_transform
from slicer_test_support import LPS_RAS, add_volume, downsample, scene_state

AFFINE_ONLY = dict(method="affine", device="cpu", workingSpacing=6.0, outputTransform=False, outputWarped=False,
                   outputWarpedLabels=False, outputJacobian=False, outputFolds=False)
"""A tiny affine run that returns only the affine transform node."""


def matrix_of(node, to_parent: bool = True) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    if to_parent:
        node.GetMatrixTransformToParent(matrix)
    else:
        node.GetMatrixTransformFromParent(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def linear_node(scene, to_parent_ras: np.ndarray, name: str = "landmarks"):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(to_parent_ras[r, c]))
    node.SetMatrixTransformToParent(matrix)
    return node


def small_rigid_ras() -> np.ndarray:
    """4 degrees about the RAS z axis and (3, -2, 4) mm: moving RAS -> fixed RAS (Slicer's ToParent)."""
    angle = np.deg2rad(4.0)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:3, 3] = (3.0, -2.0, 4.0)
    return matrix


def test_an_engine_affine_loaded_by_the_module_goes_back_to_the_engine_unchanged(scene, tmp_path):
    engine_affine = sitk.AffineTransform(3)  # as the engine writes it: a matrix about a centre, then a shift
    engine_affine.SetMatrix((1.02, 0.05, -0.01, -0.04, 0.97, 0.03, 0.02, -0.02, 1.05))
    engine_affine.SetCenter((12.0, -30.0, 8.0))
    engine_affine.SetTranslation((5.0, -3.0, 2.5))
    path = tmp_path / "affine.tfm"
    sitk.WriteTransform(engine_affine, str(path))
    node = scene.AddNewNodeByClass("vtkMRMLTransformNode", "affine")
    _load_transform(node, path)

    exported = engine_transform_from_node(node)

    np.testing.assert_allclose(read_linear_transform(exported), read_linear_transform(str(path)), atol=1e-9)


def test_the_initial_transform_is_the_node_matrix_from_parent_in_lps(scene):
    to_parent = small_rigid_ras()
    node = linear_node(scene, to_parent)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    expected = flip @ np.linalg.inv(to_parent) @ flip  # fixed LPS -> moving LPS
    np.testing.assert_allclose(read_linear_transform(engine_transform_from_node(node)), expected, atol=1e-9)
    np.testing.assert_allclose(expected[:3, :3], LPS_RAS @ np.linalg.inv(to_parent)[:3, :3] @ LPS_RAS)


def test_an_affine_run_without_steps_returns_the_initial_transform(scene, nodes):
    initial = linear_node(scene, small_rigid_ras())
    result = register_volumes(nodes["fixed"], nodes["moving"], affineIterations=0, initialTransform=initial, **AFFINE_ONLY)
    assert result.report["initial_source"] == "initial transform"
    np.testing.assert_allclose(matrix_of(result.affine), matrix_of(initial), atol=1e-4)


def test_without_an_initial_transform_the_run_starts_at_the_centres_of_mass(scene, nodes):
    result = register_volumes(nodes["fixed"], nodes["moving"], affineIterations=0, **AFFINE_ONLY)
    assert result.report["initial_source"] == "centre of mass"


def test_label_map_and_segmentation_masks_reach_the_engine_in_the_background(scene, nodes):
    moving_mask = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "moving brain")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(nodes["movingLabels"], moving_mask)
    initial = linear_node(scene, small_rigid_ras())
    result = register_volumes(nodes["fixed"], nodes["moving"], affineIterations=3, fixedMask=nodes["fixedLabels"],
                              movingMask=moving_mask, initialTransform=initial, background=True, **AFFINE_ONLY)
    assert result.report["masks"] == ["fixed", "moving"]
    assert result.report["initial_source"] == "initial transform"


def test_a_label_map_mask_reaches_the_engine_in_this_process(scene, nodes):
    result = register_volumes(nodes["fixed"], nodes["moving"], affineIterations=3, movingMask=nodes["movingLabels"],
                              **AFFINE_ONLY)
    assert result.report["masks"] == ["moving"]


def test_the_background_run_passes_masks_and_initial_transform_on_the_command_line(scene, nodes, tmp_path):
    initial = linear_node(scene, small_rigid_ras())
    job = RegistrationJob(nodes["fixed"], nodes["moving"], options=RegistrationOptions(method="affine", device="cpu"),
                          fixedMask=nodes["fixedLabels"], initialTransform=initial)
    process = EngineProcess(job._engine_inputs(), job.options, tmp_path)
    flags = {flag: process.command[i + 1] for i, flag in enumerate(process.command) if flag.startswith("--")}
    assert "--moving-mask" not in flags
    assert sitk.ReadImage(flags["--fixed-mask"]).GetSize() == nodes["fixed"].GetImageData().GetDimensions()
    np.testing.assert_allclose(read_linear_transform(flags["--initial-transform"]),
                               read_linear_transform(engine_transform_from_node(initial)), atol=1e-9)


def test_a_mask_on_another_grid_is_resampled_onto_its_volume(scene, nodes, demo_pair):
    fixed_labels = demo_pair[2]
    coarse = add_volume(scene, downsample(fixed_labels, 6.0, labels=True), "coarse mask", "vtkMRMLLabelMapVolumeNode")
    assert input_problem(nodes["fixed"], nodes["moving"], fixedMask=coarse) is None
    mask = mask_image(coarse, nodes["fixed"], "fixed")
    assert mask.GetSize() == nodes["fixed"].GetImageData().GetDimensions()
    inside = sitk.GetArrayFromImage(mask).astype(bool)
    on_grid = sitk.GetArrayFromImage(fixed_labels) > 0
    assert (inside & on_grid).sum() / (inside | on_grid).sum() > 0.85  # the same brain, 6 mm steps


def test_an_empty_label_map_mask_is_refused_by_name(scene, nodes, demo_pair):
    zeros = sitk.Image(demo_pair[2].GetSize(), sitk.sitkUInt8)
    zeros.CopyInformation(demo_pair[2])
    empty = add_volume(scene, zeros, "nothing", "vtkMRMLLabelMapVolumeNode")
    assert (input_problem(nodes["fixed"], nodes["moving"], movingMask=empty)
            == "The moving mask 'nothing' is empty: every voxel is 0.")


def test_an_empty_segmentation_mask_stops_the_run_before_the_engine_starts(scene, nodes):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "blank")
    segmentation.GetSegmentation().AddEmptySegment("blank", "blank")
    before = scene_state(scene)
    with pytest.raises(RegistrationInputError) as raised:
        register_volumes(nodes["fixed"], nodes["moving"], fixedMask=segmentation, **AFFINE_ONLY)
    assert str(raised.value) == ("The fixed mask 'blank' is empty on the grid of the fixed volume 'fixed': "
                                 "no voxel is inside it.")
    assert scene_state(scene) == before


def test_a_mask_outside_its_volume_is_refused(scene, nodes, demo_pair):
    far = sitk.Image(demo_pair[2])
    far.SetOrigin([o + 1000.0 for o in far.GetOrigin()])
    node = add_volume(scene, far, "elsewhere", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(RegistrationInputError, match="The fixed mask 'elsewhere' is empty on the grid"):
        mask_image(node, nodes["fixed"], "fixed")


def test_a_non_linear_initial_transform_is_refused_by_name(scene, nodes):
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp field")
    grid.SetAndObserveTransformFromParent(vtk.vtkGeneralTransform())
    displacement = slicer.vtkOrientedGridTransform()
    field = vtk.vtkImageData()
    field.SetDimensions(4, 4, 4)
    field.AllocateScalars(vtk.VTK_DOUBLE, 3)
    displacement.SetDisplacementGridData(field)
    grid.SetAndObserveTransformFromParent(displacement)
    assert (input_problem(nodes["fixed"], nodes["moving"], initialTransform=grid)
            == "The initial transform 'warp field' is not linear; pick a linear transform (an affine or rigid one, "
               "e.g. from landmarks) or leave it empty.")


def test_an_initial_transform_already_above_the_moving_volume_is_refused(scene, nodes):
    initial = linear_node(scene, small_rigid_ras())
    nodes["moving"].SetAndObserveTransformNodeID(initial.GetID())
    assert "is already under the initial transform 'landmarks'" in input_problem(
        nodes["fixed"], nodes["moving"], initialTransform=initial)
