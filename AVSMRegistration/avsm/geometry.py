"""The one module that owns coordinate conventions.

Conventions used everywhere in the engine:

* Images and maps are torch tensors ``B x C x D x H x W`` in SimpleITK array order (z, y, x).
* A :class:`Grid` describes where voxels sit in physical space exactly as SimpleITK does:
  ``origin``, ``spacing`` and ``direction`` are in ITK (x, y, z) order and in LPS millimetres;
  ``shape`` is the array shape (D, H, W) = (size_z, size_y, size_x).
* A *map* ``phi`` is a ``B x 3 x D x H x W`` tensor on a grid whose channels hold **physical LPS
  coordinates (x, y, z) in mm**. It is a pull-back: the value at a fixed-grid voxel is the point of the
  moving image to sample. Because channels are already (x, y, z), converting a map to the normalised
  coordinates of ``torch.nn.functional.grid_sample`` (``align_corners=True``) is one affine map per
  grid, done by :func:`physical_to_normalised` and nothing else.

SimpleITK is imported only by the functions that take or make SimpleITK images, so that the tensor code
(networks, maps, training from a tensor cache) runs on a machine with torch and numpy alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import SimpleITK as sitk


@dataclass(frozen=True)
class Grid:
    """Voxel grid in physical space (ITK/LPS conventions, vectors in (x, y, z) order)."""

    shape: tuple[int, int, int]  # (D, H, W) array order
    spacing: tuple[float, float, float]  # (sx, sy, sz) mm
    origin: tuple[float, float, float]  # physical position of voxel (0, 0, 0), mm
    direction: tuple[float, ...]  # 9 values, row-major 3x3, columns = index axes in physical space

    @classmethod
    def of_image(cls, image: sitk.Image) -> "Grid":
        size = image.GetSize()
        return cls(
            shape=(int(size[2]), int(size[1]), int(size[0])),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.shape))

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_physical_matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix mapping a continuous index (i_x, i_y, i_z, 1) to LPS (x, y, z, 1)."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix() @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def reference_image(self, pixel_id: int | None = None) -> sitk.Image:
        """An empty SimpleITK image on this grid (for resampling onto it); ``pixel_id`` default: float32."""
        import SimpleITK as sitk

        image = sitk.Image(list(self.size_xyz), sitk.sitkFloat32 if pixel_id is None else pixel_id)
        self.apply_to(image)
        return image

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def corners_physical(self) -> np.ndarray:
        """8 x 3 physical positions of the corner voxel centres."""
        dz, dy, dx = self.shape
        idx = np.array([[i, j, k, 1.0] for i in (0, dx - 1) for j in (0, dy - 1) for k in (0, dz - 1)])
        return (self.index_to_physical_matrix() @ idx.T).T[:, :3]


def axis_aligned_grid_covering(grid: Grid, spacing: float, multiple: int = 1, margin_mm: float = 0.0) -> Grid:
    """Identity-direction (LPS-aligned) grid of isotropic ``spacing`` covering ``grid``'s voxel centres.

    The box is the bounding box of ``grid``'s corner voxel centres grown by ``margin_mm``; each array
    dimension is padded (symmetrically about the box centre) to a multiple of ``multiple`` so that
    U-nets with that many halvings accept it.
    """
    corners = grid.corners_physical()
    low = corners.min(axis=0) - margin_mm
    high = corners.max(axis=0) + margin_mm
    size_xyz = np.ceil((high - low) / spacing - 1e-6).astype(int) + 1
    if multiple > 1:
        size_xyz = ((size_xyz + multiple - 1) // multiple) * multiple
    centre = (low + high) / 2.0
    origin = centre - (size_xyz - 1) * spacing / 2.0
    return Grid(
        shape=(int(size_xyz[2]), int(size_xyz[1]), int(size_xyz[0])),
        spacing=(float(spacing),) * 3,
        origin=tuple(float(o) for o in origin),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    )


def coarser_grid(grid: Grid, factor: float) -> Grid:
    """Grid spanning the same corner voxel centres with about ``factor`` times fewer voxels per axis.

    Corner centres coincide (the ``align_corners=True`` convention), so trilinear interpolation of a map
    stored on the coarse grid, evaluated on the fine grid, is exactly physical-space trilinear
    interpolation. Used for the half-resolution vSVF grid (AVSM §2.2).
    """
    size_xyz = np.array(grid.size_xyz)
    new_size = np.maximum(np.ceil(size_xyz / factor).astype(int), 2)
    spacing = np.array(grid.spacing) * (size_xyz - 1) / (new_size - 1)
    return Grid(
        shape=(int(new_size[2]), int(new_size[1]), int(new_size[0])),
        spacing=tuple(float(s) for s in spacing),
        origin=grid.origin,
        direction=grid.direction,
    )


def physical_points(grid: Grid, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    then: np.ndarray | None = None) -> torch.Tensor:
    """Identity map of ``grid``: ``1 x 3 x D x H x W`` tensor of voxel-centre LPS coordinates (x, y, z).

    ``then`` (a 4x4 homogeneous LPS -> LPS matrix) returns ``then`` applied to those points instead, at
    no extra cost. Each coordinate is an affine function of the index, built by broadcasting three 1-D
    ramps (float64, then cast), so no D x H x W index grid is materialised.
    """
    m = grid.index_to_physical_matrix()
    if then is not None:
        m = np.asarray(then, dtype=np.float64) @ m
    return _affine_of_index(m[:3], grid.shape, device, dtype)


def sampling_grid(target: Grid, source: Grid, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``1 x D x H x W x 3`` ``grid_sample`` coordinates (align_corners) on ``source`` of ``target``'s voxel centres.

    The same as ``physical_to_normalised(physical_points(target), source)``, made from one 3x4 matrix
    (target index -> physical -> source normalised) by broadcasting, without a per-voxel matrix product;
    like :func:`physical_to_normalised`, a channels-last view of a channels-first tensor.
    """
    theta = physical_to_normalised_matrix(source) @ target.index_to_physical_matrix()
    return _affine_of_index(theta[:3], target.shape, device, dtype).permute(0, 2, 3, 4, 1)


def _affine_of_index(rows: np.ndarray, shape: tuple[int, int, int], device, dtype) -> torch.Tensor:
    """``1 x 3 x D x H x W`` tensor whose channel c holds ``rows[c] @ (i_x, i_y, i_z, 1)`` at each voxel.

    The three per-axis ramps are scaled in float64 and cast; only their broadcast sum is in ``dtype``.
    """
    d, h, w = shape
    ramps = [torch.arange(n, dtype=torch.float64, device=device) for n in (w, h, d)]  # i_x, i_y, i_z
    out = torch.empty((1, 3, d, h, w), dtype=dtype, device=device)
    for c in range(3):
        along_x = (rows[c, 0] * ramps[0] + rows[c, 3]).to(dtype).view(1, 1, w)
        along_y = (rows[c, 1] * ramps[1]).to(dtype).view(1, h, 1)
        along_z = (rows[c, 2] * ramps[2]).to(dtype).view(d, 1, 1)
        torch.add(along_x + along_y, along_z, out=out[0, c])
    return out


def physical_to_normalised_matrix(grid: Grid) -> np.ndarray:
    """4x4 matrix from LPS (x, y, z) to ``grid_sample`` coordinates (x<->W, y<->H, z<->D), align_corners."""
    to_index = np.linalg.inv(grid.index_to_physical_matrix())
    size = np.array(grid.size_xyz, dtype=np.float64)
    scale = np.where(size > 1, 2.0 / np.maximum(size - 1, 1), 0.0)
    norm = np.eye(4)
    norm[:3, :3] = np.diag(scale)
    norm[:3, 3] = np.where(size > 1, -1.0, 0.0)
    return norm @ to_index


def physical_to_normalised(points: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Map ``B x 3 x D x H x W`` LPS points to a ``B x D x H x W x 3`` ``grid_sample`` grid on ``grid``."""
    m = torch.as_tensor(physical_to_normalised_matrix(grid), dtype=points.dtype, device=points.device)
    b = points.shape[0]
    flat = points.reshape(b, 3, -1)
    normalised = torch.einsum("ij,bjn->bin", m[:3, :3], flat) + m[:3, 3].view(1, 3, 1)
    return normalised.reshape(points.shape).permute(0, 2, 3, 4, 1)


def spatial_derivative_matrix(grid: Grid) -> np.ndarray:
    """3x3 matrix ``M`` with ``d/dx_phys = M @ d/di`` where ``i`` is the (i_x, i_y, i_z) index."""
    return np.linalg.inv(grid.direction_matrix() @ np.diag(grid.spacing)).T


def image_to_tensor(image: sitk.Image, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SimpleITK scalar image -> ``1 x 1 x D x H x W`` tensor."""
    import SimpleITK as sitk

    array = np.array(sitk.GetArrayViewFromImage(image), dtype=np.float32 if dtype == torch.float32 else np.float64)
    return torch.from_numpy(array).to(device=device, dtype=dtype)[None, None]


def tensor_to_image(tensor: torch.Tensor, grid: Grid, pixel_id: int | None = None) -> sitk.Image:
    """``1 x C x D x H x W`` (C = 1: scalar; C = 3: vector) tensor -> SimpleITK image on ``grid``."""
    import SimpleITK as sitk

    array = tensor.detach().cpu().numpy()[0]
    if array.shape[0] == 1:
        image = sitk.GetImageFromArray(array[0])
    else:
        image = sitk.GetImageFromArray(np.moveaxis(array, 0, -1), isVector=True)
    if pixel_id is not None:
        image = sitk.Cast(image, pixel_id)
    return grid.apply_to(image)
