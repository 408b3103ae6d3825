"""Maps and warping: pull-back sampling, composition, resampling of maps, affine maps.

A map is a ``B x 3 x D x H x W`` tensor of physical LPS points (see :mod:`avsm.geometry`).
Images are always sampled from their original grid, once; maps are composed instead of images being
re-warped (AVSM §2.2, "maps are composed so the source is interpolated once").
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import Grid, physical_points, physical_to_normalised, sampling_grid


# below this many points per thread, one grid_sample call is as fast as sharing them out
MIN_POINTS_PER_THREAD = 16_384


def grid_sample(source: torch.Tensor, coordinates: torch.Tensor, mode: str, padding_mode: str) -> torch.Tensor:
    """``F.grid_sample`` (align_corners) of ``source`` (``B x C x d x h x w``) at ``coordinates`` (``B x D x H x W x 3``).

    PyTorch's 3-D CPU kernel gives each batch entry one thread, so a single volume runs on one core whatever
    ``torch.get_num_threads()`` says. For one volume on the CPU the points are dealt out as that many batch entries
    of one expanded (not copied) source: the same values and gradients, on every thread.
    """
    threads = torch.get_num_threads()
    count = coordinates.shape[1] * coordinates.shape[2] * coordinates.shape[3]
    if (source.device.type != "cpu" or source.shape[0] != 1 or coordinates.shape[0] != 1 or threads < 2
            or count < 2 * MIN_POINTS_PER_THREAD):
        return F.grid_sample(source, coordinates, mode=mode, padding_mode=padding_mode, align_corners=True)
    chunks = min(threads, count // MIN_POINTS_PER_THREAD)
    per_chunk = -(-count // chunks)
    points = coordinates.reshape(count, 3)
    if per_chunk * chunks > count:
        points = torch.cat([points, points.new_zeros(per_chunk * chunks - count, 3)])
    values = F.grid_sample(source.expand(chunks, *source.shape[1:]), points.view(chunks, per_chunk, 1, 1, 3),
                           mode=mode, padding_mode=padding_mode, align_corners=True)  # chunks x C x per_chunk x 1 x 1
    values = values.view(chunks, source.shape[1], per_chunk).transpose(0, 1).reshape(source.shape[1], -1)[:, :count]
    return values.reshape(1, source.shape[1], *coordinates.shape[1:4])


def sample(source: torch.Tensor, source_grid: Grid, points: torch.Tensor, mode: str = "bilinear",
           padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``source`` (``B x C x d x h x w`` on ``source_grid``) at physical ``points`` (``B x 3 x D x H x W``).

    Trilinear (``mode="bilinear"`` in torch's 5-D naming) or nearest; returns ``B x C x D x H x W``.
    Images use zero padding; maps use border padding (their value extends outside their grid).
    """
    if points.shape[0] != source.shape[0]:
        points = points.expand(source.shape[0], *points.shape[1:])
    grid = physical_to_normalised(points, source_grid)
    return grid_sample(source, grid.to(source.dtype), mode, padding_mode)


def warp_image(moving: torch.Tensor, moving_grid: Grid, phi: torch.Tensor) -> torch.Tensor:
    """Pull-back warp ``moving(phi(x))``, trilinear, with ITK's boundary convention.

    As ``itk::LinearInterpolateImageFunction`` in ``sitk.Resample``: a point within half a voxel of the
    image (continuous index in [-0.5, n - 0.5]) takes the edge-clamped interpolated value, a point
    farther out is 0. So SimpleITK resampling with the exported transform reproduces this warp.
    """
    if phi.shape[0] != moving.shape[0]:
        phi = phi.expand(moving.shape[0], *phi.shape[1:])
    return warp_image_at(moving, moving_grid, physical_to_normalised(phi, moving_grid).to(moving.dtype))


def warp_image_at(moving: torch.Tensor, moving_grid: Grid, coordinates: torch.Tensor) -> torch.Tensor:
    """:func:`warp_image` at points already in ``moving_grid``'s ``grid_sample`` coordinates
    (``B x D x H x W x 3``, align_corners; from :func:`avsm.geometry.physical_to_normalised`)."""
    values = grid_sample(moving, coordinates, "bilinear", "border")
    return values * inside_box(coordinates, moving_grid).to(values.dtype)


def inside_box(coordinates: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``B x 1 x D x H x W`` booleans: which ``grid_sample`` coordinates (``B x D x H x W x 3``) of ``grid`` lie within
    half a voxel of its voxels (ITK's ``IsInsideBuffer``: continuous index in [-0.5, n - 0.5])."""
    size = torch.tensor(grid.size_xyz, dtype=coordinates.dtype, device=coordinates.device)
    half_voxel = torch.where(size > 1, 1.0 / (size - 1).clamp_min(1), torch.ones_like(size))
    return (coordinates.abs() <= 1.0 + half_voxel).all(dim=-1)[:, None]


def warp_labels(labels: torch.Tensor, labels_grid: Grid, phi: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour pull-back of an integer label map (returned as float)."""
    return sample(labels, labels_grid, phi, mode="nearest", padding_mode="zeros")


# (z, y, x) offsets of a voxel cell's 8 corners, the cell's own voxel first
_CELL_CORNERS = tuple((z, y, x) for z in (0, 1) for y in (0, 1) for x in (0, 1))
# points per pass of :func:`warp_labels_linear_at` (bounds its memory to a few hundred MB)
LABEL_CHUNK_POINTS = 1 << 20


def warp_labels_linear_at(labels: torch.Tensor, coordinates: torch.Tensor,
                          chunk_points: int = LABEL_CHUNK_POINTS) -> torch.Tensor:
    """Per-label linear interpolation of a label map (``1 x 1 x d x h x w``) at ``grid_sample`` coordinates of its grid
    (``1 x D x H x W x 3``, align_corners): each point takes the label whose trilinear weights over the 8 voxels
    around it add up to the most, as ITK's ``LabelImageGenericInterpolateImageFunction`` with linear interpolation
    (SimpleITK's ``sitkLabelLinear``) and ANTs' ``genericLabel``. Boundaries drawn so are smooth where nearest
    neighbour is blocky. ITK's boundary convention: within half a voxel of the image the neighbours are clamped to
    its edge, farther out the label is 0. Returns ``1 x 1 x D x H x W`` in ``labels``' dtype.
    """
    d, h, w = labels.shape[2:]
    volume = labels[0, 0]
    # one voxel more on each upper face (a copy of the face: ITK's edge clamping), so every cell has 8 corners
    padded = F.pad(volume[None, None].float(), (0, 1, 0, 1, 0, 1), mode="replicate")[0, 0].to(labels.dtype)
    # cells (a voxel and its upper neighbours) whose 8 corners hold one label: there any weights give that label
    uniform = torch.ones((d, h, w), dtype=torch.bool, device=labels.device)
    for z, y, x in _CELL_CORNERS[1:]:
        uniform &= padded[z:z + d, y:y + h, x:x + w] == volume
    flat, uniform, padded_flat = volume.reshape(-1), uniform.reshape(-1), padded.reshape(-1)
    padded_offsets = [z * (h + 1) * (w + 1) + y * (w + 1) + x for z, y, x in _CELL_CORNERS]
    points = coordinates.reshape(-1, 3)
    out = torch.empty(points.shape[0], dtype=labels.dtype, device=labels.device)
    for start in range(0, points.shape[0], chunk_points):
        chunk = points[start:start + chunk_points].to(torch.float32)
        inside = torch.ones(chunk.shape[0], dtype=torch.bool, device=labels.device)
        lows, fractions = [], []
        for axis, n in enumerate((w, h, d)):  # the coordinates' last axis runs x, y, z
            index = (chunk[:, axis] + 1.0) * (0.5 * (n - 1))
            inside &= (index >= -0.5) & (index <= n - 0.5)
            index = index.clamp_(0.0, n - 1)
            low = index.floor()
            fractions.append(index - low)
            lows.append(low.long())
        cell = (lows[2] * h + lows[1]) * w + lows[0]
        label = torch.where(inside, flat[cell], torch.zeros((), dtype=labels.dtype, device=labels.device))
        mixed = torch.nonzero(inside & ~uniform[cell]).squeeze(1)
        if mixed.numel():  # where the 8 corners disagree, the label with the largest sum of trilinear weights
            base = (lows[2][mixed] * (h + 1) + lows[1][mixed]) * (w + 1) + lows[0][mixed]
            values = torch.stack([padded_flat[base + offset] for offset in padded_offsets])  # 8 x mixed
            fx, fy, fz = (fraction[mixed] for fraction in fractions)
            weights = torch.stack([(fz if z else 1.0 - fz) * (fy if y else 1.0 - fy) * (fx if x else 1.0 - fx)
                                   for z, y, x in _CELL_CORNERS])
            scores = weights.clone()
            for j in range(8):
                for k in range(j + 1, 8):
                    same = values[j] == values[k]
                    scores[j] += weights[k] * same
                    scores[k] += weights[j] * same
            label[mixed] = values.gather(0, scores.argmax(dim=0, keepdim=True))[0]
        out[start:start + chunk_points] = label
    return out.reshape(1, 1, *coordinates.shape[1:4])


def resample_map(phi: torch.Tensor, phi_grid: Grid, target_grid: Grid, chunk_slices: int | None = None) -> torch.Tensor:
    """Evaluate a map stored on ``phi_grid`` at the voxel centres of ``target_grid`` (trilinear, border).

    Interpolating the map is the same as interpolating its displacement because the identity is linear.
    When each target index axis runs along one ``phi_grid`` axis (same axes up to order and sign, the usual
    case of a scanner image and the axis-aligned working grid) trilinear interpolation is separable and is
    done as three small 1-D interpolation matrices (:func:`separable_resample`); otherwise by
    ``grid_sample``, where ``chunk_slices`` bounds peak memory by processing that many D-slices at a time.
    """
    weights = axis_interpolation_matrices(phi_grid, target_grid, dtype=phi.dtype, device=phi.device)
    if weights is not None:
        return separable_resample(phi, weights)

    def on(grid: Grid) -> torch.Tensor:
        coordinates = sampling_grid(grid, phi_grid, device=phi.device, dtype=phi.dtype).expand(phi.shape[0], -1, -1, -1, -1)
        return grid_sample(phi, coordinates, "bilinear", "border")

    if chunk_slices is None or chunk_slices >= target_grid.shape[0]:
        return on(target_grid)
    pieces = []
    for start in range(0, target_grid.shape[0], chunk_slices):
        stop = min(start + chunk_slices, target_grid.shape[0])
        pieces.append(on(slab_grid(target_grid, start, stop)))
    return torch.cat(pieces, dim=2)


def axis_interpolation_matrices(source: Grid, target: Grid, dtype: torch.dtype, device,
                                zero_outside: bool = False) -> list | None:
    """For source array axis a (z, y, x): (target array axis, ``n_target x n_source`` linear weights), or None.

    None when some target index axis moves along more than one source axis (an oblique pair of grids).
    Border padding: the source coordinate is clamped to [0, n - 1] before interpolating, as in ``grid_sample``;
    ``zero_outside``: a target voxel whose source coordinate on some axis lies outside [-0.5, n - 0.5) gets 0 (its
    row is 0 there), as ITK's resampling of an image with default value 0.
    """
    index_map = np.linalg.inv(source.index_to_physical_matrix()) @ target.index_to_physical_matrix()
    linear = index_map[:3, :3]  # rows: source (i_x, i_y, i_z); columns: target (i_x, i_y, i_z)
    scale = np.abs(linear).max()
    partners = [np.flatnonzero(np.abs(row) > 1e-9 * scale) for row in linear]
    if any(len(p) != 1 for p in partners) or len({int(p[0]) for p in partners}) != 3:
        return None
    source_sizes, target_sizes = source.size_xyz, target.size_xyz
    matrices = []
    for k in (2, 1, 0):  # source array order z, y, x
        j = int(partners[k][0])
        n_source = source_sizes[k]
        position = linear[k, j] * np.arange(target_sizes[j], dtype=np.float64) + index_map[k, 3]
        weights = _linear_weights(np.clip(position, 0.0, n_source - 1), n_source)
        if zero_outside:
            weights[(position < -0.5) | (position >= n_source - 0.5)] = 0.0
        matrices.append((2 - j, torch.as_tensor(weights, dtype=dtype, device=device)))
    return matrices


def _linear_weights(position: np.ndarray, n_source: int) -> np.ndarray:
    """``len(position) x n_source`` linear interpolation weights at source index positions in [0, n_source - 1]."""
    lower = np.minimum(np.floor(position), max(n_source - 2, 0)).astype(np.int64)
    fraction = position - lower
    weights = np.zeros((len(position), n_source), dtype=np.float64)
    rows = np.arange(len(position))
    weights[rows, lower] = 1.0 - fraction
    if n_source > 1:
        weights[rows, lower + 1] += fraction
    return weights


def separable_resample(phi: torch.Tensor, matrices: list) -> torch.Tensor:
    """``B x C x d x h x w`` -> ``B x C x D x H x W`` by the three 1-D interpolation matrices of
    :func:`axis_interpolation_matrices` (one contraction per source axis, in one einsum)."""
    target_letters = "pqr"  # target array axes D, H, W
    source_letters = "abc"  # source array axes d, h, w
    operands = [f"{target_letters[t]}{source_letters[a]}" for a, (t, _) in enumerate(matrices)]
    spec = f"nm{source_letters}," + ",".join(operands) + f"->nm{target_letters}"
    return torch.einsum(spec, phi, *[w for _, w in matrices])


def upsample_map(phi: torch.Tensor, target_grid: Grid) -> torch.Tensor:
    """Trilinear upsampling of a map from ``coarser_grid(target_grid, f)`` onto ``target_grid``.

    The two grids share their corner voxel centres, so this equals :func:`resample_map` (and ``F.interpolate``
    with ``align_corners=True``), done as three 1-D interpolation matrices from the array sizes alone: about half
    the time of ``F.interpolate`` forward and backward on the CPU, and no grid_sample scatter.
    """
    matrices = [(axis, _corner_aligned_weights(n_source, n_target, phi.dtype, phi.device))
                for axis, (n_source, n_target) in enumerate(zip(phi.shape[2:], target_grid.shape))]
    return separable_resample(phi, matrices)


def _corner_aligned_weights(n_source: int, n_target: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``n_target x n_source`` linear interpolation weights between two samplings of one segment that share its
    end points (target i at source position i (n_source - 1) / (n_target - 1))."""
    position = np.arange(n_target, dtype=np.float64) * ((n_source - 1) / max(n_target - 1, 1))
    return torch.as_tensor(_linear_weights(position, n_source), dtype=dtype, device=device)


def slab_grid(grid: Grid, start: int, stop: int) -> Grid:
    """The sub-grid of D-slices ``start:stop`` of ``grid``."""
    m = grid.index_to_physical_matrix()
    return Grid(shape=(stop - start, grid.shape[1], grid.shape[2]), spacing=grid.spacing,
                origin=tuple(float(v) for v in (m @ np.array([0.0, 0.0, start, 1.0]))[:3]), direction=grid.direction)


def compose(outer: torch.Tensor, outer_grid: Grid, inner: torch.Tensor) -> torch.Tensor:
    """``outer ∘ inner``: sample the map ``outer`` (on ``outer_grid``) at the points of ``inner``.

    The displacement ``outer - id`` is what is interpolated (border-extended outside ``outer_grid``), so an
    identity or translation ``outer`` composes exactly even where ``inner`` leaves its grid.
    """
    displacement = outer - physical_points(outer_grid, device=outer.device, dtype=outer.dtype)
    return inner + sample(displacement, outer_grid, inner, padding_mode="border")


def apply_affine(matrix: torch.Tensor, translation: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``A x + b`` on a ``B x 3 x ...`` tensor of points; ``matrix`` is ``B x 3 x 3`` (or 3 x 3)."""
    if matrix.dim() == 2:
        matrix = matrix[None]
        translation = translation[None]
    b = points.shape[0]
    flat = points.reshape(b, 3, -1)
    out = torch.bmm(matrix.expand(b, 3, 3).to(points.dtype), flat) + translation.expand(b, 3).to(points.dtype)[..., None]
    return out.reshape(points.shape)


def affine_after_map(matrix: torch.Tensor, translation: torch.Tensor, points: torch.Tensor,
                     pullback_map: torch.Tensor | None = None, map_grid: Grid | None = None) -> torch.Tensor:
    """Where the full map ``A psi^{-1}(x) + b`` sends ``points`` (``1 x 3 x ...`` LPS mm): ``pullback_map`` psi^{-1}
    (``1 x 3 x d x h x w`` LPS points on ``map_grid``, border-extended; None: the identity), then the affine."""
    if pullback_map is not None:
        points = sample(pullback_map.to(points.device, points.dtype), map_grid, points, padding_mode="border")
    return apply_affine(matrix, translation, points)


def affine_map(matrix: torch.Tensor, translation: torch.Tensor, grid: Grid) -> torch.Tensor:
    """The affine map ``x -> A x + b`` evaluated on ``grid`` (``B x 3 x D x H x W``)."""
    points = physical_points(grid, device=matrix.device, dtype=matrix.dtype)
    return apply_affine(matrix, translation, points)
