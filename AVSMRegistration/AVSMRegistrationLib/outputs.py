"""Engine outputs -> MRML nodes: transforms with their fixed/moving references, the warped volume
and labels, det(J) and folds, the deformation grid, subject-hierarchy placement and the summary."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

import slicer

from .display import show_folds, show_grid, show_jacobian
from .engine import EngineOutputs
from .geometry import ijk_to_ras, set_ijk_to_ras, update_volume_from_image
from .hierarchy import place_beside
from .labels import LabelSource, fill_label_map, fill_segmentation, label_map_segments
from .scene import SceneTransaction

REPORT_ATTRIBUTE = "AVSMRegistration.Report"
SUMMARY_ATTRIBUTE = "AVSMRegistration.Summary"


@dataclass
class RegistrationNodes:
    """What a run created (None for outputs that were not requested)."""

    transform: object = None
    affine: object = None
    warped: object = None
    warpedLabels: object = None
    jacobian: object = None
    folds: object = None
    inverse: object = None
    summary: str = ""
    report: dict = field(default_factory=dict)

    def nodes(self) -> list:
        return [n for n in (self.transform, self.affine, self.warped, self.warpedLabels, self.jacobian, self.folds,
                            self.inverse) if n is not None]


def _load_transform(node, path) -> None:
    """Read an ITK transform file through a storage node: Slicer converts LPS->RAS and stores the
    resampling (fixed->moving) transform as FromParent, so the node maps moving onto fixed."""
    storage = slicer.vtkMRMLTransformStorageNode()  # not added: the node keeps no link to a temp file
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise RuntimeError(f"Could not read the transform file {path}.")


def _on_fixed_grid(image: sitk.Image, fixed) -> sitk.Image:
    """Engine outputs are on the fixed grid (the caller then copies the fixed node's IJKToRAS exactly)."""
    array_shape = tuple(reversed(image.GetSize()))
    fixed_shape = tuple(reversed(fixed.GetImageData().GetDimensions()))
    if array_shape != fixed_shape:
        raise RuntimeError(f"Engine output of size {image.GetSize()} is not on the fixed grid {fixed_shape[::-1]}.")
    return image


def _volume(scene, cls: str, name: str, image: sitk.Image, fixed):
    node = scene.AddNewNodeByClass(cls, scene.GenerateUniqueName(name))
    update_volume_from_image(node, _on_fixed_grid(image, fixed))
    set_ijk_to_ras(node, ijk_to_ras(fixed))
    return node


def _warped_labels(scene, image: sitk.Image, request, source: LabelSource, labels_name: str, fixed):
    """A new node of the kind `request` names (an existing node's own kind, whatever the input's
    kind was; the input's kind for True), filled with the warped labels."""
    labels = _on_fixed_grid(image, fixed)
    as_segmentation = (request.IsA("vtkMRMLSegmentationNode") if not isinstance(request, bool)
                       else source.is_segmentation)
    name = scene.GenerateUniqueName(f"{labels_name} warped")
    if as_segmentation:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segments = (list(enumerate(source.segments, start=1)) if source.is_segmentation
                    else label_map_segments(labels, source, scene))
        fill_segmentation(node, labels, segments, fixed)
    else:
        node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
        fill_label_map(node, labels, source)
        set_ijk_to_ras(node, ijk_to_ras(fixed))
    return node


def build_nodes(outputs: EngineOutputs, fixed, moving, requests: dict, label_source: LabelSource | None,
                labels_name: str, summary: str, show_deformation_grid: bool = True) -> RegistrationNodes:
    """Create the requested output nodes; all of them or (on an error) none.

    `requests[key]` is True (new node), False/None (skip) or an existing node whose content is
    replaced at the very end, after every new node was built.
    """
    scene = fixed.GetScene()
    wanted = {key: request for key, request in requests.items() if request not in (None, False)}
    base = moving.GetName()
    result = RegistrationNodes(summary=summary, report=outputs.report)
    with SceneTransaction(scene):
        if "transform" in wanted:
            node = scene.AddNewNodeByClass("vtkMRMLTransformNode", scene.GenerateUniqueName(f"{base} to {fixed.GetName()} (AVSM)"))
            _load_transform(node, outputs.transform_file)
            result.transform = node
        if "affine" in wanted:
            node = scene.AddNewNodeByClass("vtkMRMLTransformNode", scene.GenerateUniqueName(f"{base} to {fixed.GetName()} (affine)"))
            _load_transform(node, outputs.affine_file)
            result.affine = node
        if "inverse" in wanted:
            node = scene.AddNewNodeByClass("vtkMRMLTransformNode", scene.GenerateUniqueName(f"{fixed.GetName()} to {base} (AVSM inverse)"))
            _load_transform(node, outputs.inverse_file)
            result.inverse = node
        if "warped" in wanted:
            result.warped = _volume(scene, "vtkMRMLScalarVolumeNode", f"{base} warped",
                                    sitk.Cast(outputs.warped, sitk.sitkFloat32), fixed)
        if "warpedLabels" in wanted and outputs.warped_labels is not None and label_source is not None:
            result.warpedLabels = _warped_labels(scene, outputs.warped_labels, wanted["warpedLabels"], label_source,
                                                 labels_name, fixed)
        if "jacobian" in wanted:
            result.jacobian = _volume(scene, "vtkMRMLScalarVolumeNode", f"{base} det(J)",
                                      sitk.Cast(outputs.det_jacobian, sitk.sitkFloat32), fixed)
        if "folds" in wanted:
            result.folds = _volume(scene, "vtkMRMLLabelMapVolumeNode", f"{base} folds",
                                   sitk.Cast(outputs.folds, sitk.sitkUInt8), fixed)

        for key, request in wanted.items():
            fresh = getattr(result, key)
            if not isinstance(request, bool) and fresh is not None:
                request.CopyContent(fresh)
                scene.RemoveNode(fresh)
                setattr(result, key, request)
        _decorate(result, fixed, moving, outputs.report, show_deformation_grid)
        place_beside(result.nodes(), moving)
    return result


def _decorate(result: RegistrationNodes, fixed, moving, report: dict, show_deformation_grid: bool) -> None:
    """Provenance, colours, the grid and the warped volume's display."""
    for transform in (result.transform, result.affine):
        if transform is not None:
            transform.SetNodeReferenceID(transform.GetFixedNodeReferenceRole(), fixed.GetID())
            transform.SetNodeReferenceID(transform.GetMovingNodeReferenceRole(), moving.GetID())
    if result.inverse is not None:  # it moves the fixed volume onto the moving one
        result.inverse.SetNodeReferenceID(result.inverse.GetFixedNodeReferenceRole(), moving.GetID())
        result.inverse.SetNodeReferenceID(result.inverse.GetMovingNodeReferenceRole(), fixed.GetID())
    if result.transform is not None:
        result.transform.SetAttribute(SUMMARY_ATTRIBUTE, result.summary)
        result.transform.SetAttribute(REPORT_ATTRIBUTE, json.dumps(report, default=str))
        show_grid(result.transform, fixed, show_deformation_grid)
    if result.warped is not None:
        result.warped.CreateDefaultDisplayNodes()
        moving_display = moving.GetDisplayNode()
        if moving_display is not None and not moving_display.GetAutoWindowLevel():
            result.warped.GetDisplayNode().AutoWindowLevelOff()
            result.warped.GetDisplayNode().SetWindowLevel(moving_display.GetWindow(), moving_display.GetLevel())
    if result.jacobian is not None:
        det_min = report.get("det_jacobian_min")
        det_max = report.get("det_jacobian_max")
        if det_min is None or det_max is None:
            values = slicer.util.arrayFromVolume(result.jacobian)
            det_min, det_max = float(np.min(values)), float(np.max(values))
        show_jacobian(result.jacobian, float(det_min), float(det_max))
    if result.folds is not None:
        show_folds(result.folds)
