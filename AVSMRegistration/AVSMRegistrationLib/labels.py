"""Label maps and segmentations <-> engine label images.

A segmentation is merged into one label image on its volume's grid (segment n -> label n, in
segment order) and comes back as a segmentation with the same segment names and colours. A label
map must already share its volume's grid (checked in `validation`). A mask goes the same way and is
then made binary (non-zero: inside); a label-map mask on another grid is resampled onto its volume's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import vtk

import slicer
from slicer.util import updateVolumeFromArray

from .errors import RegistrationInputError
from .geometry import image_from_volume, ijk_to_ras, set_ijk_to_ras, update_volume_from_image, world_ijk_to_ras


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


BINARY_LABELMAP = "Binary labelmap"
"""vtkSegmentationConverter's name of the voxel representation the engine needs."""


def oriented_image_from_volume(volume) -> "slicer.vtkOrientedImageData":
    """`CreateOrientedImageDataFromVolumeNode` without its leak: the C++ call returns a new object
    that the caller owns, and Python holds a second reference, so one is released here."""
    image = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(volume)
    image.UnRegister(None)
    return image


def can_make_binary_labelmap(segmentation_node) -> bool:
    """True when the segmentation holds a binary labelmap or can be converted to one."""
    ensure_segmentation_converters()
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.ContainsRepresentation(BINARY_LABELMAP):
        return True
    paths = slicer.vtkSegmentationConversionPaths()
    segmentation.GetPossibleConversions(BINARY_LABELMAP, paths)
    return paths.GetNumberOfPaths() > 0


def with_binary_labelmap(segmentation_node, volume):
    """The segmentation itself when it has a binary labelmap; otherwise a converted copy (never
    added to the scene: the input is not modified), rasterised on `volume`'s grid."""
    if segmentation_node.GetSegmentation().ContainsRepresentation(BINARY_LABELMAP):
        return segmentation_node
    copy = slicer.vtkMRMLSegmentationNode()
    copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
    copy.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    if not copy.GetSegmentation().CreateRepresentation(BINARY_LABELMAP):
        source = segmentation_node.GetSegmentation().GetSourceRepresentationName()
        raise RegistrationInputError(f"The segmentation '{segmentation_node.GetName()}' ({source}) could not be "
                                     "converted to a binary labelmap; convert it in the Segmentations module.")
    return copy


def label_image(labels, volume) -> tuple[sitk.Image, LabelSource]:
    """Engine label image (uint16, on `volume`'s grid) for a label map or segmentation node."""
    if not isinstance(labels, slicer.vtkMRMLSegmentationNode):
        display = labels.GetDisplayNode()
        source = LabelSource(False, color_node_id=display.GetColorNodeID() if display else None)
        return image_from_volume(labels, sitk.sitkUInt16), source

    ensure_segmentation_converters()
    labels = with_binary_labelmap(labels, volume)
    segmentation = labels.GetSegmentation()
    segment_ids = vtk.vtkStringArray()
    segments = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        segment_ids.InsertNextValue(segment_id)
        segments.append(Segment(segment_id, segment.GetName(), tuple(segment.GetColor())))
    reference = oriented_image_from_volume(volume)
    merged = slicer.vtkOrientedImageData()
    labels.GenerateMergedLabelmapForAllSegments(
        merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, reference, segment_ids)
    on_grid = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        merged, reference, on_grid, False, True)
    holder = slicer.vtkMRMLLabelMapVolumeNode()  # never added to the scene
    slicer.vtkSlicerSegmentationsModuleLogic.CopyOrientedImageDataToVolumeNode(on_grid, holder)
    set_ijk_to_ras(holder, world_ijk_to_ras(volume))  # exactly the volume's grid, not a float round trip of it
    return image_from_volume(holder, sitk.sitkUInt16), LabelSource(True, segments)


def _same_geometry(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    voxel = min(b.GetSpacing())
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0.0, atol=tolerance * voxel)
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0.0, atol=tolerance * voxel)
            and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0.0, atol=tolerance))


def mask_image(mask, volume, role: str) -> sitk.Image:
    """Engine mask (uint8 0/1 on `volume`'s grid, world coordinates) for a label map or segmentation node.

    A segmentation is rasterised on the volume's grid like labels; a label map on another grid is resampled
    onto it (nearest neighbour, 0 outside the mask's box). Raises `RegistrationInputError` when no voxel of
    the volume is inside, so an empty mask stops the run before the engine starts.
    """
    grid = image_from_volume(volume, sitk.sitkUInt8)
    if isinstance(mask, slicer.vtkMRMLSegmentationNode):
        labels, _ = label_image(mask, volume)
    else:
        labels = image_from_volume(mask)
        if not _same_geometry(labels, grid):
            labels = sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    inside = sitk.Cast(labels != 0, sitk.sitkUInt8)
    inside.CopyInformation(grid)
    if not sitk.GetArrayViewFromImage(inside).any():
        raise RegistrationInputError(f"The {role} mask '{mask.GetName()}' is empty on the grid of the {role} volume "
                                     f"'{volume.GetName()}': no voxel is inside it.")
    return inside


def fill_label_map(node, image: sitk.Image, source: LabelSource) -> None:
    """Warped labels into a label-map node, coloured like the input label map."""
    update_volume_from_image(node, sitk.Cast(image, sitk.sitkInt16))
    node.CreateDefaultDisplayNodes()
    if source.color_node_id and node.GetScene() and node.GetScene().GetNodeByID(source.color_node_id):
        node.GetDisplayNode().SetAndObserveColorNodeID(source.color_node_id)


def label_map_segments(image: sitk.Image, source: LabelSource, scene) -> list[tuple[int, Segment]]:
    """(label value, segment) for every label present in `image`, named and coloured from the input
    label map's colour table: how warped label-map labels go into a segmentation node."""
    color_node = scene.GetNodeByID(source.color_node_id) if source.color_node_id and scene else None
    segments = []
    for value in (int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v > 0):
        name, color = f"Label {value}", (0.5, 0.5, 0.5)
        if color_node is not None and value < color_node.GetNumberOfColors():
            rgba = [0.0, 0.0, 0.0, 0.0]
            if color_node.GetColor(value, rgba):
                color = tuple(rgba[:3])
            name = color_node.GetColorName(value) or name
        segments.append((value, Segment(f"label_{value}", name, color)))
    return segments


def fill_segmentation(node, image: sitk.Image, segments: list[tuple[int, Segment]], reference_volume) -> None:
    """Warped labels into a segmentation node: segment `segment` holds the voxels of label `value`."""
    ensure_segmentation_converters()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    array = sitk.GetArrayFromImage(image)
    holder = slicer.vtkMRMLLabelMapVolumeNode()  # never added to the scene
    set_ijk_to_ras(holder, ijk_to_ras(reference_volume))
    for value, segment in segments:
        segmentation.AddEmptySegment(segment.segment_id, segment.name, list(segment.color))
        updateVolumeFromArray(holder, (array == value).astype(np.uint8))
        set_ijk_to_ras(holder, ijk_to_ras(reference_volume))
        binary = oriented_image_from_volume(holder)
        logic.SetBinaryLabelmapToSegment(binary, node, segment.segment_id, logic.MODE_REPLACE)
    node.CreateDefaultDisplayNodes()
