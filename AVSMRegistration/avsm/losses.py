"""Similarity losses and regularisers (lower is better).

* :class:`MultiKernelLNCC` — AVSM's mk-LNCC (AVSM §2.2): squared local correlation over
  dilated box windows at several sizes, strided, no padding; eps on the unnormalised variance product.
* :class:`MutualInformation` — normalised mutual information from a Parzen joint histogram (change of contrast).
* :func:`ncc_loss` — global normalised cross-correlation, 1 - NCC.
* :func:`local_ncc_loss` — VoxelMorph's windowed NCC (window 9), returned as 1 - mean(lncc).
* :func:`mse_loss`, :func:`diffusion_regulariser`.
Images are ``B x 1 x D x H x W`` in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .methods import SIMILARITIES


def box_sum(x: torch.Tensor, size: int, dilation: int = 1, stride: int = 1) -> torch.Tensor:
    """Sum over dilated ``size^3`` boxes (valid positions only), as three separable 1-D passes.

    Undilated boxes come from recursive doubling (cost growing as log2 ``size``), dilated ones from 1-D convolutions.
    """
    if dilation == 1:
        return _box_sum_undilated(x, size, stride)
    c = x.shape[1]
    out = x
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = size
        kernel = torch.ones((c, 1, *shape), dtype=x.dtype, device=x.device)
        dil = [1, 1, 1]
        dil[axis] = dilation
        st = [1, 1, 1]
        st[axis] = stride
        out = F.conv3d(out, kernel, stride=st, dilation=dil, groups=c)
    return out


def _box_sum_undilated(x: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Undilated box sums along each spatial axis, then strided."""
    return _UndilatedBoxSum.apply(x, size, stride)


def _window_sums(x: torch.Tensor, dim: int, size: int, stride: int) -> torch.Tensor:
    """Sums over ``size`` consecutive values along ``dim``, at every ``stride``-th valid start.

    Sums over windows of 1, 2, 4, ... values, each two of the one before (recursive doubling), added up by the
    binary digits of ``size``: about 2 log2(size) whole-array additions, each value the sum of at most ``size`` terms
    (no running total along the axis whose rounding grows with the axis's length, as a cumulative sum's does).
    """
    n = x.shape[dim]
    valid = n - size + 1
    result, offset, power, block = None, 0, 1, x
    while True:
        if size & power:  # this power of two is a digit of size: add the windows of that length at the offset
            part = block.narrow(dim, offset, valid)
            result = part if result is None else result + part
            offset += power
        if 2 * power > size:
            break
        length = block.shape[dim] - power
        block = block.narrow(dim, 0, length) + block.narrow(dim, power, length)
        power *= 2
    if result is x:  # size 1: a copy, not the input itself
        result = x.clone()
    return result[(slice(None),) * dim + (slice(None, None, stride),)] if stride > 1 else result


class _UndilatedBoxSum(torch.autograd.Function):
    """Box sums over ``size^3`` windows at ``stride`` (valid positions), axis by axis; the backward pass is the
    adjoint written out (each output's gradient spread back over its window, again by window sums), cheaper
    than autograd's trace of the forward's slices and copies."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int, stride: int) -> torch.Tensor:
        ctx.size, ctx.stride, ctx.shape = size, stride, x.shape
        for dim in (2, 3, 4):
            x = _window_sums(x, dim, size, stride)
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        size, stride = ctx.size, ctx.stride
        for dim in (4, 3, 2):
            # input i receives the outputs k whose window k * stride .. k * stride + size - 1 holds it: the outputs
            # spread at their stride, padded by size - 1 zeros on the left and summed over windows of size
            shape = list(grad.shape)
            shape[dim] = ctx.shape[dim] + size - 1
            spread = grad.new_zeros(shape)
            spread[(slice(None),) * dim + (slice(size - 1, size - 1 + (grad.shape[dim] - 1) * stride + 1, stride),)] = grad
            grad = _window_sums(spread, dim, size, 1)
        return grad, None, None


def _lncc_from_sums(fixed_sums: torch.Tensor, moving_sums: torch.Tensor, n: float, eps: float) -> torch.Tensor:
    """Squared local correlation from box sums: ``fixed_sums`` (s_i, s_ii), ``moving_sums`` (s_j, s_jj, s_ij)."""
    s_i, s_ii = fixed_sums.unbind(dim=1)
    s_j, s_jj, s_ij = moving_sums.unbind(dim=1)
    cross = s_ij - s_i * s_j / n
    var_i = s_ii - s_i * s_i / n
    var_j = s_jj - s_j * s_j / n
    return cross * cross / (var_i * var_j + eps)


def _fixed_sums(fixed: torch.Tensor, size: int, dilation: int, stride: int) -> torch.Tensor:
    # a fixed image without gradient has constant sums: keep them out of the backward pass (3 channels, not 5)
    with torch.set_grad_enabled(torch.is_grad_enabled() and fixed.requires_grad):
        return box_sum(torch.cat([fixed, fixed * fixed], dim=1), size, dilation, stride)


def _lncc_squared(warped: torch.Tensor, fixed: torch.Tensor, size: int, dilation: int, stride: int,
                  eps: float, fixed_sums: torch.Tensor | None = None) -> torch.Tensor:
    if fixed_sums is None:
        fixed_sums = _fixed_sums(fixed, size, dilation, stride)
    moving_sums = box_sum(torch.cat([warped, warped * warped, fixed * warped], dim=1), size, dilation, stride)
    return _lncc_from_sums(fixed_sums, moving_sums, float(size**3), eps)


def _masked_lncc_squared(warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor, size: int, dilation: int,
                         stride: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared local correlation over mask-weighted voxels, and each window's mask total (``B x d x h x w`` each)."""
    weighted_fixed, weighted_warped = mask * fixed, mask * warped
    sums = box_sum(torch.cat([mask, weighted_fixed, weighted_fixed * fixed, weighted_warped,
                              weighted_warped * warped, weighted_warped * fixed], dim=1), size, dilation, stride)
    n, s_i, s_ii, s_j, s_jj, s_ij = sums.unbind(dim=1)
    count = n.clamp_min(1e-6)
    cross = s_ij - s_i * s_j / count
    var_i = (s_ii - s_i * s_i / count).clamp_min(0.0)
    var_j = (s_jj - s_j * s_j / count).clamp_min(0.0)
    return cross * cross / (var_i * var_j + eps), n


@dataclass(frozen=True)
class LNCCScale:
    size_ratio: float  # window size as a fraction of the smallest image dimension
    weight: float
    dilation: int


# Kernel sets of the reference (selected by the smallest spatial size: >=128, >=64, else).
LNCC_SETS: dict[int, tuple[LNCCScale, ...]] = {
    0: (LNCCScale(1 / 16, 0.1, 2), LNCCScale(1 / 8, 0.3, 2), LNCCScale(1 / 4, 0.6, 2)),
    1: (LNCCScale(1 / 4, 0.3, 2), LNCCScale(1 / 2, 0.7, 2)),
    2: (LNCCScale(1 / 2, 1.0, 1),),
}


class MultiKernelLNCC(torch.nn.Module):
    """mk-LNCC: sum_k w_k (1 - mean(lncc_k^2)). ``scales=None`` picks the reference set by image size."""

    def __init__(self, scales: Sequence[LNCCScale] | None = None, stride_ratio: float = 0.25, eps: float = 1e-5):
        super().__init__()
        self.scales = tuple(scales) if scales is not None else None
        self.stride_ratio = stride_ratio
        self.eps = eps

    def scales_for(self, shape: Sequence[int]) -> tuple[LNCCScale, ...]:
        if self.scales is not None:
            return self.scales
        smallest = min(shape)
        return LNCC_SETS[0 if smallest >= 128 else 1 if smallest >= 64 else 2]

    def windows(self, shape: Sequence[int]) -> list[tuple[int, int, int, float]]:
        """(size, dilation, stride, weight) of each window for an image of spatial ``shape`` (D, H, W)."""
        smallest = min(shape)
        windows = []
        for scale in self.scales_for(shape):
            size = max(int(smallest * scale.size_ratio), 2)
            dilation = scale.dilation
            while (size - 1) * dilation + 1 > smallest and dilation > 1:
                dilation -= 1
            size = min(size, smallest)
            stride = max(int((size + 1) * self.stride_ratio), 1)
            windows.append((size, dilation, stride, scale.weight))
        return windows

    def forward(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.against(fixed)(warped)

    def against(self, fixed: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The loss against one fixed image, its box sums computed once: ``loss(warped, mask=None)``, for optimisers
        that evaluate many warps of one pair (a fixed image without gradient keeps its sums out of autograd).

        Without a mask it is ``self(warped, fixed)``. A ``mask`` (``B x 1 x D x H x W`` in [0, 1]) weighs every voxel:
        each window's correlation is taken over its voxels weighted by the mask (a voxel outside does not enter its
        sums), and each window counts by its mask total, so windows wholly outside do not count and a window across
        the mask's edge is scored on its inside part only. The mask may carry a gradient (a moving field of view
        pulled back through the map): the loss is then differentiable in where the images are compared.
        """
        windows = self.windows(fixed.shape[2:])
        sums = [_fixed_sums(fixed, size, dilation, stride) for size, dilation, stride, _ in windows]

        def loss(warped: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            total = fixed.new_zeros(())
            for (size, dilation, stride, weight), fixed_sums in zip(windows, sums):
                if mask is None:
                    lncc = _lncc_squared(warped, fixed, size, dilation, stride, self.eps, fixed_sums)
                    total = total + weight * (1.0 - lncc.mean())
                else:
                    lncc, inside = _masked_lncc_squared(warped, fixed, mask, size, dilation, stride, self.eps)
                    total = total + weight * (1.0 - (lncc * inside).sum() / inside.sum().clamp_min(1e-6))
            return total

        return loss


def _central_gradient(image: torch.Tensor) -> torch.Tensor:
    """``B x 1 x D x H x W`` -> ``B x 3 x (D-2) x (H-2) x (W-2)``: central differences along W, H, D (voxel units)
    on the interior voxels."""
    along_w = (image[..., 2:] - image[..., :-2])[:, :, 1:-1, 1:-1]
    along_h = (image[:, :, :, 2:] - image[:, :, :, :-2])[:, :, 1:-1, :, 1:-1]
    along_d = (image[:, :, 2:] - image[:, :, :-2])[:, :, :, 1:-1, 1:-1]
    return 0.5 * torch.cat([along_w, along_h, along_d], dim=1)


def _normalised_gradient(gradient: torch.Tensor, edge: float) -> torch.Tensor:
    """``g / sqrt(|g|^2 + e^2)`` with ``e`` = ``edge`` times the mean of ``|g|`` (``B x 3 x ...``); the norm's
    subgradient at ``|g| = 0`` is 0, so flat regions keep a finite gradient."""
    magnitude = torch.linalg.vector_norm(gradient, dim=1, keepdim=True)
    return gradient / (magnitude.square() + (edge * magnitude.mean()) ** 2).sqrt()


class NormalisedGradientFields(torch.nn.Module):
    """Squared normalised gradient fields (Haber and Modersitzki, 2006) as a loss:
    ``1 - mean((gF . gM)^2 / ((|gF|^2 + eF^2) (|gM|^2 + eM^2)))`` over the interior voxels, ``gF``, ``gM`` the images'
    central-difference gradients on one isotropic grid. Edges that coincide score whatever their polarity and
    whatever the order of the tissues' intensities on either side (T1 against FLAIR, where no local intensity
    relation holds across three tissues). The edge parameters ``eF``, ``eM`` are ``edge`` times each image's mean
    gradient magnitude, so that noise in flat regions does not count and the loss does not change with either
    image's scale."""

    def __init__(self, edge: float = 0.5):
        super().__init__()
        self.edge = edge

    def forward(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.against(fixed)(warped)

    def against(self, fixed: torch.Tensor) -> Callable[..., torch.Tensor]:
        """``loss(warped, mask=None)`` against one fixed image; a ``mask`` (``B x 1 x D x H x W``) weighs voxels."""
        fixed_scaled = _normalised_gradient(_central_gradient(fixed), self.edge)

        def loss(warped: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            scaled = _normalised_gradient(_central_gradient(warped), self.edge)
            alignment = (fixed_scaled * scaled).sum(dim=1).pow(2)
            if mask is None:
                return 1.0 - alignment.mean()
            weight = mask[:, 0, 1:-1, 1:-1, 1:-1]
            return 1.0 - (alignment * weight).sum() / weight.sum().clamp_min(1e-6)

        return loss


class MutualInformation(torch.nn.Module):
    """Normalised mutual information of two images in [0, 1], from a Parzen-window joint histogram, as a loss
    ``2 - (H(F) + H(M)) / H(F, M)`` (0 when one image determines the other, 1 when they are independent).

    It does not assume that the same tissue has the same (or a monotonically related) intensity in both images:
    the similarity for a change of contrast (T1 against T2 or FLAIR). ``bins`` Gaussian bins over [0, 1], width
    one bin; at most ``max_samples`` voxels (a fixed pseudo-random subset) enter the histogram.
    """

    def __init__(self, bins: int = 32, max_samples: int = 50_000):
        super().__init__()
        self.bins = bins
        self.max_samples = max_samples

    def _weights(self, values: torch.Tensor) -> torch.Tensor:
        """``N`` values -> ``N x bins`` Parzen weights, each row summing to 1."""
        centres = torch.linspace(0.0, 1.0, self.bins, device=values.device, dtype=values.dtype)
        weights = torch.exp(-0.5 * ((values[:, None].clamp(0.0, 1.0) - centres) * (self.bins - 1)) ** 2)
        return weights / weights.sum(dim=1, keepdim=True)

    def sample_indices(self, count: int, device: torch.device) -> Optional[torch.Tensor]:
        """A fixed pseudo-random subset of ``max_samples`` voxel indices (None: every voxel). Random rather than
        strided: a stride can fall in step with the rows and sample a few columns only."""
        if count <= self.max_samples:
            return None
        generator = torch.Generator().manual_seed(count)
        return torch.randperm(count, generator=generator)[:self.max_samples].sort().values.to(device)

    @staticmethod
    def _take(image: torch.Tensor, indices: Optional[torch.Tensor]) -> torch.Tensor:
        flat = image.reshape(-1)
        return flat if indices is None else flat[indices]

    def forward(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.against(fixed)(warped)

    def against(self, fixed: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The loss against one fixed image (no gradient), its Parzen weights computed once: ``loss(warped, mask=None)``;
        a ``mask`` (same shape, in [0, 1]) weighs each voxel's contribution to the histogram."""
        indices = self.sample_indices(fixed.numel(), fixed.device)
        fixed_weights = self._weights(self._take(fixed.detach(), indices))

        def loss(warped: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            moving_weights = self._weights(self._take(warped, indices))
            if mask is not None:
                moving_weights = moving_weights * self._take(mask, indices)[:, None]
            joint = fixed_weights.T @ moving_weights
            joint = joint / joint.sum().clamp_min(1e-12)

            def entropy(p: torch.Tensor) -> torch.Tensor:
                return -(p * torch.log(p.clamp_min(1e-12))).sum()

            return 2.0 - (entropy(joint.sum(dim=1)) + entropy(joint.sum(dim=0))) / entropy(joint).clamp_min(1e-12)

        return loss


def affine_similarity(name: str) -> torch.nn.Module:
    """The affine stage's similarity by name: ``lncc`` (mk-LNCC, the reference windows) or ``mi`` (normalised MI)."""
    if name == "lncc":
        return MultiKernelLNCC()
    if name == "mi":
        return MutualInformation()
    raise ValueError(f"unknown similarity '{name}'; choose one of {', '.join(SIMILARITIES)}")


def ncc_loss(warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """1 - global normalised cross-correlation (per batch item, averaged)."""
    b = fixed.shape[0]
    w = warped.reshape(b, -1)
    f = fixed.reshape(b, -1)
    if mask is not None:
        m = mask.reshape(b, -1).to(w.dtype)
    else:
        m = torch.ones_like(f)
    count = m.sum(dim=1, keepdim=True).clamp_min(1.0)
    w = w - (w * m).sum(1, keepdim=True) / count
    f = f - (f * m).sum(1, keepdim=True) / count
    cross = (w * f * m).sum(1)
    ncc = cross / torch.sqrt((w * w * m).sum(1) * (f * f * m).sum(1) + eps)
    return (1.0 - ncc).mean()


def local_ncc_loss(warped: torch.Tensor, fixed: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """VoxelMorph windowed NCC (squared local correlation, same padding), as 1 - mean."""
    pad = window // 2
    padded = [F.pad(t, (pad,) * 6) for t in (warped, fixed)]
    lncc = _lncc_squared(padded[0], padded[1], window, 1, 1, eps)
    return 1.0 - lncc.mean()


def mse_loss(warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    return torch.mean((warped - fixed) ** 2)


def diffusion_regulariser(displacement: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference of a ``B x 3 x D x H x W`` displacement (VoxelMorph's 'l2' grad)."""
    dz = displacement[:, :, 1:] - displacement[:, :, :-1]
    dy = displacement[:, :, :, 1:] - displacement[:, :, :, :-1]
    dx = displacement[..., 1:] - displacement[..., :-1]
    return (dz.pow(2).mean() + dy.pow(2).mean() + dx.pow(2).mean()) / 3.0
