"""Recurrent multi-step affine network (AVSM §2.1).

One network with shared weights is applied T times. Step t sees (moving warped by the current affine,
fixed) on the fixed working grid and predicts a correction (Ã_t, b̃_t), composed as in the paper:

    A_t = Ã_t A_{t-1},   b_t = Ã_t b_{t-1} + b̃_t,

i.e. phi_t = corr_t ∘ phi_{t-1}. The warped image is always resampled from the original moving image.

Conventions (those of :class:`avsm.optimisation.AffineParameters`): the affine maps fixed physical
points to moving physical points, y = A x + b (LPS mm). The correction is parametrised about the point
c_t = phi_{t-1}(c), the image of the working-grid centre c, as corr(y) = (I + L)(y - c_t) + c_t + s e,
with e the mean physical extent of the working grid; the network outputs (L, s) (12 numbers), so its
output is independent of units and of where the grid sits in physical space.

Departures from the authors' code: adaptive average pooling to a fixed 4 x 4 x 4 map
before the flatten (the reference flattens a feature map whose size depends on the input), so any input
size works while the fully connected layers still see where features are (a global average would not:
it cannot tell a shift to the left from one to the right); and a zero-initialised last layer so that
the untrained network outputs the identity correction. Convolutions start from He (Kaiming) initialisation:
with PyTorch's default initialisation the signal shrinks through the seven ReLU layers until the output
no longer depends on the input, and the network learns one mean affine for every pair. Activations are
LeakyReLU(0.2) rather than ReLU: with ReLU the 32 hidden units of the head died within a few hundred Adam
steps (every pair then got the same affine).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..geometry import Grid, physical_points
from ..maps import apply_affine, warp_image
from .conv import Conv3d


POOLED_SIZE = 4  # the encoder's output is averaged onto 4 x 4 x 4 cells whatever the input size
NEGATIVE_SLOPE = 0.2


def grid_centre_and_extent(grid: Grid) -> tuple[np.ndarray, float]:
    """Physical centre (LPS mm) and mean physical extent (mm) of a grid."""
    corners = grid.corners_physical()
    extent = float(np.mean([(n - 1) * s for n, s in zip(grid.size_xyz, grid.spacing)]))
    return corners.mean(axis=0), max(extent, 1e-6)


def he_initialise(module: nn.Module, negative_slope: float) -> None:
    """He-normal weights (fan-in, for (leaky) ReLU) and zero biases for every convolution and linear layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv3d, nn.ConvTranspose3d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, a=negative_slope, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)


def conv_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(Conv3d(in_channels, out_channels, 3, stride=stride, padding=1),
                         nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))


@dataclass
class AffineSteps:
    """Result of a multi-step affine run: ``matrix`` B x 3 x 3, ``translation`` B x 3 (fixed -> moving)."""

    matrix: torch.Tensor
    translation: torch.Tensor
    warped: torch.Tensor  # B x 1 x D x H x W, moving resampled once with the final affine


class AffineNet(nn.Module):
    """Siamese first convolution, strided encoder, adaptive pooling to 4^3, two fully connected layers.

    ``width`` is the channel count of the encoder (the reference uses 16 for the Siamese layer and 32
    after the concatenation); ``hidden`` the width of the first fully connected layer.
    """

    def __init__(self, width: int = 16, hidden: int = 32):
        super().__init__()
        self.siamese = conv_relu(1, width)
        w2 = 2 * width
        self.encoder = nn.Sequential(
            nn.MaxPool3d(2, ceil_mode=True), conv_relu(w2, w2), conv_relu(w2, w2, stride=2), conv_relu(w2, w2),
            nn.MaxPool3d(2, ceil_mode=True), conv_relu(w2, w2), conv_relu(w2, width, stride=2), conv_relu(width, width),
        )
        self.pool = nn.AdaptiveAvgPool3d(POOLED_SIZE)
        self.head = nn.Sequential(nn.Linear(width * POOLED_SIZE**3, hidden), nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True), nn.Linear(hidden, 12))
        he_initialise(self, negative_slope=NEGATIVE_SLOPE)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """``B x 1 x D x H x W`` images in [0, 1] (any size >= 4 per axis) -> ``B x 12`` = (L row-major, s)."""
        features = torch.cat([self.siamese(2.0 * warped - 1.0), self.siamese(2.0 * fixed - 1.0)], dim=1)
        pooled = self.pool(self.encoder(features)).flatten(1)
        return self.head(pooled)


def compose_affine(correction_matrix: torch.Tensor, correction_translation: torch.Tensor, matrix: torch.Tensor,
                   translation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper's update: A_t = Ã A_{t-1}, b_t = Ã b_{t-1} + b̃ (batched: B x 3 x 3, B x 3)."""
    new_matrix = correction_matrix @ matrix
    new_translation = (correction_matrix @ translation[..., None])[..., 0] + correction_translation
    return new_matrix, new_translation


def correction_affine(parameters: torch.Tensor, centre: torch.Tensor, extent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ã, b̃) of ``corr(y) = (I + L)(y - c) + c + s e`` from network outputs ``B x 12`` and centres ``B x 3``."""
    eye = torch.eye(3, dtype=parameters.dtype, device=parameters.device)
    matrix = eye + parameters[:, :9].reshape(-1, 3, 3)
    translation = centre + parameters[:, 9:] * extent - (matrix @ centre[..., None])[..., 0]
    return matrix, translation


def batched_affine_map(matrix: torch.Tensor, translation: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``x -> A_i x + b_i`` on ``grid`` for each batch item (``B x 3 x 3``, ``B x 3``) -> ``B x 3 x D x H x W``."""
    points = physical_points(grid, device=matrix.device, dtype=matrix.dtype)
    return apply_affine(matrix, translation, points.expand(matrix.shape[0], *points.shape[1:]))


def multi_step_affine(net: AffineNet, fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
                      matrix: torch.Tensor, translation: torch.Tensor, steps: int) -> AffineSteps:
    """Run ``steps`` recurrent steps from the initial affine (``matrix`` B x 3 x 3, ``translation`` B x 3).

    ``fixed`` lives on ``fixed_grid``, ``moving`` on ``moving_grid`` (the same grid for every batch item).
    """
    centre_np, extent = grid_centre_and_extent(fixed_grid)
    centre = torch.as_tensor(centre_np, dtype=fixed.dtype, device=fixed.device).expand(fixed.shape[0], 3)
    matrix = matrix.expand(fixed.shape[0], 3, 3)
    translation = translation.expand(fixed.shape[0], 3)
    warped = warp_image(moving, moving_grid, batched_affine_map(matrix, translation, fixed_grid))
    for _ in range(steps):
        moving_centre = (matrix @ centre[..., None])[..., 0] + translation
        corr_matrix, corr_translation = correction_affine(net(warped, fixed), moving_centre, extent)
        matrix, translation = compose_affine(corr_matrix, corr_translation, matrix, translation)
        warped = warp_image(moving, moving_grid, batched_affine_map(matrix, translation, fixed_grid))
    return AffineSteps(matrix, translation, warped)
