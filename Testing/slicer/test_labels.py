"""Label maps and segmentations in and out of the engine (AVSMRegistrationLib.labels, .outputs): a
segmentation without a binary labelmap, warped labels written into an existing node of the other
kind, and the oriented images the segmentation logic hands over."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from AVSMRegistrationLib import RegistrationInputError, input_problem, register_volumes
from AVSMRegistrationLib.labels import (BINARY_LABELMAP, can_make_binary_labelmap, ensure_segmentation_converters,
                                        label_image, oriented_image_from_volume)
from slicer_test_support import AFFINE_FAST

RUN = dict(method="affine", device="cpu", outputJacobian=False, outputFolds=False, outputWarped=False,
           outputAffine=False, **AFFINE_FAST)


def surface_only_segmentation(scene, volume, name="ball"):
    """A segmentation whose only representation is a closed surface (as a model import makes one)."""
    ensure_segmentation_converters()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.GetSegmentation().SetSourceRepresentationName("Closed surface")
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter([(bounds[2 * i] + bounds[2 * i + 1]) / 2 for i in range(3)])
    sphere.SetRadius(30.0)
    sphere.SetPhiResolution(24)
    sphere.SetThetaResolution(24)
    sphere.Update()
    node.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "ball", [1.0, 0.0, 0.0])
    return node


def test_a_surface_only_segmentation_is_converted_on_a_copy(scene, nodes):
    segmentation = surface_only_segmentation(scene, nodes["moving"])
    assert not segmentation.GetSegmentation().ContainsRepresentation(BINARY_LABELMAP)
    assert input_problem(nodes["fixed"], nodes["moving"], movingLabels=segmentation) is None
    image, source = label_image(segmentation, nodes["moving"])
    inside = int((sitk.GetArrayFromImage(image) == 1).sum())
    ball_voxels = 4 / 3 * np.pi * 30.0 ** 3 / np.prod(nodes["moving"].GetSpacing())
    assert inside == pytest.approx(ball_voxels, rel=0.15)  # the 30 mm ball, not an all-zero image
    assert [segment.name for segment in source.segments] == ["ball"]
    assert not segmentation.GetSegmentation().ContainsRepresentation(BINARY_LABELMAP)  # the input is untouched


def test_a_segmentation_that_cannot_become_a_labelmap_is_refused_by_name(scene, nodes):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "contours")
    segmentation.GetSegmentation().SetSourceRepresentationName("Planar contour")
    segment = slicer.vtkSegment()
    segment.SetName("outline")
    segment.AddRepresentation("Planar contour", vtk.vtkPolyData())
    segmentation.GetSegmentation().AddSegment(segment)
    assert not can_make_binary_labelmap(segmentation)
    problem = input_problem(nodes["fixed"], nodes["moving"], movingLabels=segmentation)
    assert problem == ("The moving segmentation 'contours' has no binary labelmap and its 'Planar contour' "
                       "representation cannot be converted to one; convert it in the Segmentations module.")
    with pytest.raises(RegistrationInputError, match="'contours'"):
        register_volumes(nodes["fixed"], nodes["moving"], movingLabels=segmentation, **RUN)


def test_label_map_labels_fill_an_existing_segmentation_node(scene, known_nodes, tmp_path):
    target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my warped segmentation")
    target.GetSegmentation().AddEmptySegment("old", "old content")
    result = register_volumes(known_nodes["fixed"], known_nodes["moving"], movingLabels=known_nodes["movingLabels"],
                              outputWarpedLabels=target, tempRoot=tmp_path, **RUN)
    assert result.warpedLabels is target and target.GetName() == "my warped segmentation"
    segments = target.GetSegmentation()
    assert segments.GetSegment("old") is None
    assert [segments.GetNthSegmentID(i) for i in range(segments.GetNumberOfSegments())] == [
        "label_1", "label_2", "label_3", "label_4"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 2  # only the two inputs


def test_segmentation_labels_fill_an_existing_label_map_node(scene, known_nodes, tmp_path):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "moved segmentation")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(known_nodes["movingLabels"], segmentation)
    target = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "my warped labels")
    slicer.util.updateVolumeFromArray(target, np.full((3, 3, 3), 9, np.int16))  # old content: label 9
    result = register_volumes(known_nodes["fixed"], known_nodes["moving"], movingLabels=segmentation,
                              outputWarpedLabels=target, tempRoot=tmp_path, **RUN)
    assert result.warpedLabels is target
    values = slicer.util.arrayFromVolume(target)
    assert values.shape == slicer.util.arrayFromVolume(known_nodes["fixed"]).shape
    assert set(np.unique(values)) == {0, 1, 2, 3, 4}
    reference = register_volumes(known_nodes["fixed"], known_nodes["moving"], movingLabels=known_nodes["movingLabels"],
                                 tempRoot=tmp_path, **RUN).warpedLabels
    np.testing.assert_array_equal(values, slicer.util.arrayFromVolume(reference))


def test_oriented_images_from_volumes_are_released(nodes):
    """CreateOrientedImageDataFromVolumeNode hands over a new object: with Python's own reference that
    makes two, and the image would never be freed."""
    raw = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(nodes["moving"])
    assert raw.GetReferenceCount() == 2
    raw.UnRegister(None)
    image = oriented_image_from_volume(nodes["moving"])
    assert image.GetReferenceCount() == 1
    assert image.GetDimensions() == nodes["moving"].GetImageData().GetDimensions()
