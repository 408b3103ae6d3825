"""Label maps and segmentations <-> engine label images.

A segmentation is merged into one label image on its volume's grid (segment n -> label n, in
segment order) and comes back as a segmentation with the same segment names and colours. A label
map must already share its volume's grid (checked in `validation`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import vtk

import slicer
from slicer.util import updateVolumeFromArray

from .geometry import image_from_volume, ijk_to_ras, set_ijk_to_ras, update_volume_from_image


@dataclass
class Segment:
    segment_id: str
    name: str
    color: tuple[float, float, float]


@dataclass
class LabelSource:
    """How to turn an engine label image back into the user's kind of node."""

    is_segmentation: bool
    segments: list[Segment] = field(default_factory=list)  # label n = segments[n - 1]
    color_node_id: str | None = None  # colour table of a label map input


def ensure_segmentation_converters() -> None:
    """Register the binary-labelmap <-> closed-surface rules when nobody has (slicer-core without
    the Slicer application); the application registers them at start-up."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.GetConverterRules():
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def _oriented_geometry(volume) -> "slicer.vtkOrientedImageData":
    return slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(volume)


def label_image(labels, volume) -> tuple[sitk.Image, LabelSource]:
    """Engine label image (uint16, on `volume`'s grid) for a label map or segmentation node."""
    if not isinstance(labels, slicer.vtkMRMLSegmentationNode):
        display = labels.GetDisplayNode()
        source = LabelSource(False, color_node_id=display.GetColorNodeID() if display else None)
        return image_from_volume(labels, sitk.sitkUInt16), source

    ensure_segmentation_converters()
    segmentation = labels.GetSegmentation()
    segment_ids = vtk.vtkStringArray()
    segments = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        segment_ids.InsertNextValue(segment_id)
        segments.append(Segment(segment_id, segment.GetName(), tuple(segment.GetColor())))
    reference = _oriented_geometry(volume)
    merged = slicer.vtkOrientedImageData()
    labels.GenerateMergedLabelmapForAllSegments(
        merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, reference, segment_ids)
    on_grid = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        merged, reference, on_grid, False, True)
    holder = slicer.vtkMRMLLabelMapVolumeNode()  # never added to the scene
    slicer.vtkSlicerSegmentationsModuleLogic.CopyOrientedImageDataToVolumeNode(on_grid, holder)
    set_ijk_to_ras(holder, ijk_to_ras(volume))  # exactly the volume's grid, not a float round trip of it
    return image_from_volume(holder, sitk.sitkUInt16), LabelSource(True, segments)


def fill_label_map(node, image: sitk.Image, source: LabelSource) -> None:
    """Warped labels into a label-map node, coloured like the input label map."""
    update_volume_from_image(node, sitk.Cast(image, sitk.sitkInt16))
    node.CreateDefaultDisplayNodes()
    if source.color_node_id and node.GetScene() and node.GetScene().GetNodeByID(source.color_node_id):
        node.GetDisplayNode().SetAndObserveColorNodeID(source.color_node_id)


def fill_segmentation(node, image: sitk.Image, source: LabelSource, reference_volume) -> None:
    """Warped labels into a segmentation node: one segment per input segment, same name and colour."""
    ensure_segmentation_converters()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    array = sitk.GetArrayFromImage(image)
    holder = slicer.vtkMRMLLabelMapVolumeNode()  # never added to the scene
    set_ijk_to_ras(holder, ijk_to_ras(reference_volume))
    for value, segment in enumerate(source.segments, start=1):
        segmentation.AddEmptySegment(segment.segment_id, segment.name, list(segment.color))
        updateVolumeFromArray(holder, (array == value).astype(np.uint8))
        set_ijk_to_ras(holder, ijk_to_ras(reference_volume))
        binary = logic.CreateOrientedImageDataFromVolumeNode(holder)
        logic.SetBinaryLabelmapToSegment(binary, node, segment.segment_id, logic.MODE_REPLACE)
    node.CreateDefaultDisplayNodes()
