"""Volume node <-> SimpleITK image, the only place that converts between RAS and LPS.

Slicer stores a volume's geometry as one IJKToRAS matrix (RAS millimetres); ITK and SimpleITK
store spacing, origin and a direction matrix in LPS millimetres. The two differ by flipping the
first two physical axes: ``p_LPS = diag(-1, -1, 1) p_RAS``. Voxel arrays are the same in both, in
(k, j, i) = (z, y, x) order, so only the geometry changes here.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk

import slicer
from slicer.util import arrayFromVolume, updateVolumeFromArray

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
LPS_FROM_RAS_4 = np.diag([-1.0, -1.0, 1.0, 1.0])

GRID_TOLERANCE = 1e-4
"""Relative tolerance (of the voxel size) for two grids to count as the same."""


def _numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(node) -> np.ndarray:
    """4x4 IJKToRAS matrix of a volume node as numpy."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return _numpy(matrix)


def engine_transform_from_node(node) -> sitk.AffineTransform:
    """The engine's initial transform (fixed -> moving physical points, LPS) from a linear transform node.

    The node is read the way Slicer uses it to align a moving volume placed under it: its transform to
    world maps moving RAS onto fixed RAS, so its transform *from* world (the resampling direction, which
    Slicer writes to an ITK file) maps fixed RAS to moving RAS, and in LPS ``M_LPS = F M_RAS F`` with
    ``F = diag(-1, -1, 1, 1)``. Loading the result back with a transform storage node gives the node's
    matrix again. The node must be linear (`validation` refuses the others by name).
    """
    from_world = vtk.vtkMatrix4x4()
    if not node.GetMatrixTransformFromWorld(from_world):
        raise ValueError(f"The transform '{node.GetName()}' is not linear.")
    matrix = LPS_FROM_RAS_4 @ _numpy(from_world) @ LPS_FROM_RAS_4
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    return transform


def world_ijk_to_ras(node) -> np.ndarray:
    """IJKToRAS in world coordinates: the node's own matrix after its parent transforms, which must be
    linear (`validation` refuses a non-linear one). Equal to `ijk_to_ras` for a node with no parent."""
    matrix = ijk_to_ras(node)
    parent = node.GetParentTransformNode()
    if parent is None:
        return matrix
    to_world = vtk.vtkMatrix4x4()
    if not parent.GetMatrixTransformToWorld(to_world):
        raise ValueError(f"'{node.GetName()}' is under the non-linear transform '{parent.GetName()}'.")
    return _numpy(to_world) @ matrix


def set_ijk_to_ras(node, matrix: np.ndarray) -> None:
    vtk_matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vtk_matrix.SetElement(r, c, float(matrix[r, c]))
    node.SetIJKToRASMatrix(vtk_matrix)


def dimensions(node) -> tuple[int, int, int]:
    """Voxel counts (i, j, k) of a volume node; (0, 0, 0) when it holds no image."""
    image = node.GetImageData() if node is not None else None
    if image is None:
        return (0, 0, 0)
    return tuple(int(d) for d in image.GetDimensions())


def ijk_to_ras_from_image(image: sitk.Image) -> np.ndarray:
    """IJKToRAS of a SimpleITK image (LPS geometry)."""
    direction_lps = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_FROM_RAS @ direction_lps @ np.diag(image.GetSpacing())
    matrix[:3, 3] = LPS_FROM_RAS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def image_from_volume(node, pixel_type: int | None = None) -> sitk.Image:
    """Copy a scalar volume node into a SimpleITK image with LPS geometry, in world coordinates: a
    linear parent transform is applied to the copy (hardened exactly, no resampling).

    The node is not touched (no storage node, no modified flag): the voxels are copied.
    """
    array = np.array(arrayFromVolume(node), copy=True)
    image = sitk.GetImageFromArray(array)
    matrix = world_ijk_to_ras(node)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    direction_ras = matrix[:3, :3] / spacing
    image.SetSpacing(spacing.tolist())
    image.SetOrigin((LPS_FROM_RAS @ matrix[:3, 3]).tolist())
    image.SetDirection((LPS_FROM_RAS @ direction_ras).ravel().tolist())
    if pixel_type is not None:
        image = sitk.Cast(image, pixel_type)
    return image


def update_volume_from_image(node, image: sitk.Image) -> None:
    """Fill a volume node with the voxels and geometry of a SimpleITK image."""
    updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    set_ijk_to_ras(node, ijk_to_ras_from_image(image))


def same_grid(a, b, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when two volume nodes share voxel counts and IJKToRAS (within a fraction of a voxel)."""
    if dimensions(a) != dimensions(b):
        return False
    ma, mb = ijk_to_ras(a), ijk_to_ras(b)
    voxel = float(np.min(np.linalg.norm(ma[:3, :3], axis=0)))
    return bool(np.allclose(ma, mb, rtol=0.0, atol=tolerance * max(voxel, 1e-6)))


def describe_grid(node) -> str:
    """Short description of a volume's grid for error messages: size, spacing and origin."""
    matrix = ijk_to_ras(node)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    size = "x".join(str(d) for d in dimensions(node))
    return (f"{size} voxels, spacing {'x'.join(f'{s:.3g}' for s in spacing)} mm, "
            f"origin ({', '.join(f'{o:.1f}' for o in matrix[:3, 3])})")


def is_scalar_volume(node) -> bool:
    return isinstance(node, slicer.vtkMRMLScalarVolumeNode) and not isinstance(node, slicer.vtkMRMLVectorVolumeNode)
