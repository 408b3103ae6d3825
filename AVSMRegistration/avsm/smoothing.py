"""Multi-Gaussian smoother: velocity v = K * m from a vector momentum m (AVSM §2.2, Eq. 4).

K = sum_i w_i G_sigma_i with each Gaussian normalised to unit sum on the discrete grid and sum w_i = 1,
so K has unit DC gain. The convolution is done with FFTs on a zero-padded grid (padded at least by the kernel's
radius, up to a length the FFT is fast on), i.e. it is a *linear*
(non-periodic) convolution: the authors' mermaid code convolves periodically, which wraps momentum from
one face of the domain to the opposite one; we pad instead (a departure at the boundary).
Sigmas are physical (mm) and isotropic, so the smoothing is the same along every physical axis.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .geometry import Grid

# AVSM / mermaid defaults: sigmas as fractions of the unit domain, weights increasing with sigma.
DEFAULT_SIGMA_FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25)
DEFAULT_WEIGHTS = (1 / 15, 2 / 15, 3 / 15, 4 / 15, 5 / 15)


def default_sigmas_mm(grid: Grid, fractions: Sequence[float] = DEFAULT_SIGMA_FRACTIONS) -> list[float]:
    """The paper's sigmas (fractions of the domain) in mm, using the grid's mean physical extent."""
    extent = sum((n - 1) * s for n, s in zip(grid.size_xyz, grid.spacing)) / 3.0
    return [f * extent for f in fractions]


def fft_size(n: int) -> int:
    """The smallest length >= ``n`` whose prime factors are 2, 3 and 5: FFTs of such lengths are fast, where a
    prime length (43) takes more than twice as long. Zero padding beyond the kernel's radius changes nothing in a
    linear convolution."""
    size = n
    while True:
        rest = size
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 1


class MultiGaussianSmoother(nn.Module):
    """Applies K (sum of weighted Gaussians, sigmas in mm) channel-wise to ``B x C x D x H x W`` fields."""

    def __init__(self, grid: Grid, sigmas_mm: Sequence[float], weights: Sequence[float] | None = None,
                 truncate: float = 3.0):
        super().__init__()
        if weights is None:
            weights = [1.0 / len(sigmas_mm)] * len(sigmas_mm)
        if len(weights) != len(sigmas_mm):
            raise ValueError("one weight per sigma is needed")
        total = float(sum(weights))
        weights = [w / total for w in weights]
        spacing_dhw = (grid.spacing[2], grid.spacing[1], grid.spacing[0])
        self.shape = grid.shape
        radius = [min(int(math.ceil(truncate * max(sigmas_mm) / sp)), n) for n, sp in zip(grid.shape, spacing_dhw)]
        self.padded = tuple(fft_size(n + r) for n, r in zip(grid.shape, radius))
        kernel = torch.zeros(self.padded, dtype=torch.float64)
        axes = []
        for n_pad, r, sp in zip(self.padded, radius, spacing_dhw):
            offsets = torch.arange(n_pad, dtype=torch.float64)
            offsets = torch.where(offsets > n_pad // 2, offsets - n_pad, offsets)  # wrapped signed offsets
            offsets[offsets.abs() > r] = float("nan")
            axes.append(offsets * sp)
        dz, dy, dx = torch.meshgrid(*axes, indexing="ij")
        dist2 = dz**2 + dy**2 + dx**2
        for sigma, w in zip(sigmas_mm, weights):
            g = torch.exp(-dist2 / (2.0 * sigma**2))
            g = torch.nan_to_num(g, nan=0.0)
            kernel += w * g / g.sum()
        self.register_buffer("kernel_fft", torch.fft.rfftn(kernel).real, persistent=False)  # float64, cast on use

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        d, h, w = self.shape
        pd, ph, pw = self.padded
        padded = nn.functional.pad(field, (0, pw - w, 0, ph - h, 0, pd - d))
        spectrum = torch.fft.rfftn(padded, dim=(-3, -2, -1)) * self.kernel_fft.to(field.dtype)
        return torch.fft.irfftn(spectrum, s=self.padded, dim=(-3, -2, -1))[..., :d, :h, :w]
