"""Input checks run before anything is exported, started or created.

`input_problem` returns the first problem as one sentence (the panel shows it on the disabled
Register button); `check_inputs` raises it as `RegistrationInputError` (the console call).
"""
from __future__ import annotations

import slicer
import vtk

from .errors import RegistrationInputError
from .geometry import describe_grid, dimensions, is_scalar_volume, same_grid
from .labels import can_make_binary_labelmap
from .options import OUTPUT_KEYS

OUTPUT_NODE_CLASSES = {
    "transform": "vtkMRMLTransformNode",
    "affine": "vtkMRMLTransformNode",
    "warped": "vtkMRMLScalarVolumeNode",
    "warpedLabels": ("vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode"),
    "jacobian": "vtkMRMLScalarVolumeNode",
    "folds": "vtkMRMLLabelMapVolumeNode",
    "inverse": "vtkMRMLTransformNode",
}


def _name(node) -> str:
    return node.GetName() if node is not None else "(none)"


def volume_problem(node, role: str) -> str | None:
    """Why `node` cannot be the `role` ("fixed"/"moving") intensity volume, or None."""
    if node is None:
        return f"Select a {role} volume."
    if isinstance(node, slicer.vtkMRMLLabelMapVolumeNode):
        return f"The {role} volume '{_name(node)}' is a label map; pick an intensity volume."
    image = node.GetImageData() if isinstance(node, slicer.vtkMRMLVolumeNode) else None
    if not isinstance(node, slicer.vtkMRMLVolumeNode):
        return f"The {role} input '{_name(node)}' is not a volume."
    if not is_scalar_volume(node) or (image is not None and image.GetNumberOfScalarComponents() != 1):
        components = image.GetNumberOfScalarComponents() if image is not None else "several"
        return (f"The {role} volume '{_name(node)}' is a vector volume ({components} components); "
                "pick a scalar volume (convert it with the Vector to Scalar Volume module).")
    dims = dimensions(node)
    if image is None or min(dims) == 0:
        return f"The {role} volume '{_name(node)}' has no image data."
    if min(dims) < 2:
        size = " x ".join(str(d) for d in dims)
        return f"The {role} volume '{_name(node)}' is 2-D ({size} voxels); registration needs a 3-D volume."
    low, high = image.GetScalarRange()
    if low == high:
        return f"The {role} volume '{_name(node)}' is empty: every voxel is {low + 0.0:g}."
    return transform_problem(node, role)


def transform_problem(node, role: str) -> str | None:
    """Why the parent transform of the `role` volume is not usable, or None.

    The moving volume may sit under a linear transform: the engine gets a copy with it applied
    (exact, no resampling). The fixed volume may not: every output is placed on its grid."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return None
    if role == "fixed":
        return (f"The fixed volume '{_name(node)}' is under the transform '{_name(parent)}'; outputs are placed on "
                "the fixed grid, so harden or remove that transform first (Transforms module).")
    if not parent.IsTransformToWorldLinear():
        return (f"The {role} volume '{_name(node)}' is under the non-linear transform '{_name(parent)}'; "
                "harden it first (Transforms module).")
    return None


def _same_parent(labels, volume) -> bool:
    return labels.GetParentTransformNode() is volume.GetParentTransformNode()


def labels_problem(labels, volume, role: str, kind: str = "labels") -> str | None:
    """Why `labels` (kind "labels") or a mask (kind "mask") cannot go with the `role` volume, or None.
    Label maps given as labels must share the volume's grid; a label-map mask is resampled onto it."""
    if labels is None:
        return None
    noun, verb = ("labels", "are") if kind == "labels" else ("mask", "is")
    what = role if kind == "labels" else f"{role} mask"
    if isinstance(labels, (slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode)) \
            and not _same_parent(labels, volume):
        return (f"The {role} {noun} '{_name(labels)}' {verb} not under the same transform as the {role} volume "
                f"'{_name(volume)}'; put both under the same transform or harden them.")
    if isinstance(labels, slicer.vtkMRMLSegmentationNode):
        if labels.GetSegmentation().GetNumberOfSegments() == 0:
            return f"The {what} segmentation '{_name(labels)}' has no segments."
        if not can_make_binary_labelmap(labels):
            source = labels.GetSegmentation().GetSourceRepresentationName()
            return (f"The {what} segmentation '{_name(labels)}' has no binary labelmap and its '{source}' "
                    "representation cannot be converted to one; convert it in the Segmentations module.")
        return None
    if not isinstance(labels, slicer.vtkMRMLLabelMapVolumeNode):
        return f"The {role} {noun} '{_name(labels)}' must be a label map volume or a segmentation."
    if labels.GetImageData() is None or min(dimensions(labels)) == 0:
        return f"The {what} label map '{_name(labels)}' has no image data."
    low, high = labels.GetImageData().GetScalarRange()
    if kind == "mask":
        return f"The {role} mask '{_name(labels)}' is empty: every voxel is 0." if low == high == 0 else None
    if not same_grid(labels, volume):
        return (f"The {role} label map '{_name(labels)}' is not on the grid of the {role} volume "
                f"'{_name(volume)}' ({describe_grid(labels)} vs {describe_grid(volume)}); "
                "resample it onto the volume first.")
    if high <= 0:
        return f"The {role} label map '{_name(labels)}' holds no labels (every voxel is 0)."
    return None


def initial_transform_problem(transform, moving) -> str | None:
    """Why `transform` cannot start the registration of `moving`, or None. It must be linear (its
    matrix, with its parents', is what the engine gets) and must not already move the moving volume."""
    if transform is None:
        return None
    if not isinstance(transform, slicer.vtkMRMLTransformNode):
        return f"The initial transform '{_name(transform)}' is not a transform node."
    if not transform.IsTransformToWorldLinear():
        return (f"The initial transform '{_name(transform)}' is not linear; pick a linear transform "
                "(an affine or rigid one, e.g. from landmarks) or leave it empty.")
    parent = moving.GetParentTransformNode()
    while parent is not None:
        if parent is transform:
            return (f"The moving volume '{_name(moving)}' is already under the initial transform "
                    f"'{_name(transform)}'; take it out of that transform, or leave the initial transform empty.")
        parent = parent.GetParentTransformNode()
    to_world = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(to_world)
    if abs(to_world.Determinant()) < 1e-6:
        return f"The initial transform '{_name(transform)}' is singular: it maps the volume onto a plane."
    return None


def output_problem(key: str, request, inputs) -> str | None:
    """Why an existing node cannot receive output `key`, or None."""
    if request is None or isinstance(request, bool):
        return None
    classes = OUTPUT_NODE_CLASSES[key]
    classes = classes if isinstance(classes, tuple) else (classes,)
    if not any(request.IsA(cls) for cls in classes):
        return f"Output '{key}' must be a {' or '.join(classes)}, not '{_name(request)}' ({request.GetClassName()})."
    if any(request is node for node in inputs if node is not None):
        return f"Output '{key}' would overwrite the input '{_name(request)}'; inputs are never modified."
    return None


def input_problem(fixed, moving, movingLabels=None, fixedLabels=None, outputs=None, fixedMask=None, movingMask=None,
                  initialTransform=None) -> str | None:
    """The first reason these inputs cannot be registered, as one sentence; None when they can."""
    for node, role in ((fixed, "fixed"), (moving, "moving")):
        problem = volume_problem(node, role)
        if problem:
            return problem
    if fixed is moving:
        return f"The fixed and moving volumes are the same node '{_name(fixed)}'; pick two different volumes."
    for labels, volume, role in ((movingLabels, moving, "moving"), (fixedLabels, fixed, "fixed")):
        problem = labels_problem(labels, volume, role)
        if problem:
            return problem
    if movingLabels is not None and movingLabels is fixedLabels:
        return f"The fixed and moving labels are the same node '{_name(movingLabels)}'."
    for mask, volume, role in ((fixedMask, fixed, "fixed"), (movingMask, moving, "moving")):
        problem = labels_problem(mask, volume, role, kind="mask")
        if problem:
            return problem
    if fixedMask is not None and fixedMask is movingMask:
        return f"The fixed and moving masks are the same node '{_name(fixedMask)}'."
    problem = initial_transform_problem(initialTransform, moving)
    if problem:
        return problem
    inputs = (fixed, moving, movingLabels, fixedLabels, fixedMask, movingMask, initialTransform)
    outputs = outputs or {}
    for key in OUTPUT_KEYS:
        problem = output_problem(key, outputs.get(key), inputs)
        if problem:
            return problem
    existing = [node for node in outputs.values() if node is not None and not isinstance(node, bool)]
    if len({id(node) for node in existing}) != len(existing):
        return "The same node is selected for two outputs; pick a different node or 'create new'."
    if not any(request not in (None, False) for request in outputs.values()) and outputs:
        return "Select at least one output."
    return None


def default_fixed_volume(scene):
    """The volume the panel proposes as fixed: the scene's first intensity volume (never a label map
    or a vector volume), or None."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if is_scalar_volume(node) and not isinstance(node, slicer.vtkMRMLLabelMapVolumeNode):
            return node
    return None


def check_inputs(fixed, moving, movingLabels=None, fixedLabels=None, outputs=None, fixedMask=None, movingMask=None,
                 initialTransform=None) -> None:
    """Raise `RegistrationInputError` with the first problem of `input_problem`."""
    problem = input_problem(fixed, moving, movingLabels, fixedLabels, outputs, fixedMask, movingMask,
                            initialTransform)
    if problem:
        raise RegistrationInputError(problem)
