"""The two U-nets: AVSM's momentum generator (AVSM §2.2) and VoxelMorph's (VoxelMorph TMI 2019).

Both accept any input size: skips are cropped or zero-padded to the decoder's size (AVSM), or the input
is padded to a multiple of 16 and the output cropped back (VoxelMorph, four poolings).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .affine_net import he_initialise
from .conv import Conv3d


def conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv3d:
    return Conv3d(in_channels, out_channels, 3, stride=stride, padding=1)


def match_size(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop or zero-pad the spatial dims (at the far end) to ``shape``."""
    tensor = tensor[..., : shape[0], : shape[1], : shape[2]]
    pad = []
    for have, want in zip(reversed(tensor.shape[2:]), reversed(list(shape))):
        pad += [0, want - have]
    return F.pad(tensor, pad) if any(pad) else tensor


class MomentumUNet(nn.Module):
    """Momentum generation U-net of AVSM (``MomentumGen_resid``): 4 down-sampling levels, residual links
    within levels, concatenated skips, the last decoder level removed so the output is at half resolution.

    ``widths`` = (c1, c2, c4, c8, c16), the channels at full, 1/2, 1/4, 1/8 and 1/16 resolution; the
    reference is (16, 32, 64, 128, 256) (5.9 M parameters). No normalisation layers; ReLU in the encoder,
    LeakyReLU(0.01) in the decoder, the last two convolutions linear.
    Input ``B x 2 x D x H x W`` (warped, fixed in [-1, 1]); output ``B x 3 x ceil(D/2) x ceil(H/2) x ceil(W/2)``.
    Departures from the authors' default initialisation: He-normal weights (see
    :func:`avsm.networks.affine_net.he_initialise`) and a last layer at zero, so the untrained network
    predicts zero momentum and starts training from the affine result.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 256)):
        super().__init__()
        c1, c2, c4, c8, c16 = widths
        self.d1 = conv(2, c1)
        self.d2 = nn.ModuleList([conv(c1, c2, 2), conv(c2, c2), conv(c2, c2)])
        self.d4 = nn.ModuleList([conv(c2, c4, 2), conv(c4, c4), conv(c4, c4)])
        self.d8 = nn.ModuleList([conv(c4, c8, 2), conv(c8, c8), conv(c8, c8)])
        self.d16 = nn.ModuleList([conv(c8, c16, 2), conv(c16, c16)])
        self.u8 = nn.ModuleList([nn.ConvTranspose3d(c16, c8, 2, stride=2), conv(2 * c8, c8), conv(c8, c8)])
        self.u4 = nn.ModuleList([nn.ConvTranspose3d(c8, c4, 2, stride=2), conv(2 * c4, c2), conv(c2, c2)])
        self.u2 = nn.ModuleList([nn.ConvTranspose3d(c2, c2, 2, stride=2), conv(2 * c2, c1), conv(c1, 3)])
        he_initialise(self, negative_slope=0.01)
        nn.init.zeros_(self.u2[2].weight)
        nn.init.zeros_(self.u2[2].bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        relu, lrelu = F.relu, lambda t: F.leaky_relu(t, 0.01)
        d1 = relu(self.d1(images))
        d2_1 = relu(self.d2[0](d1))
        d2_2 = d2_1 + relu(self.d2[1](d2_1))
        d2_3 = d2_1 + relu(self.d2[2](d2_2))  # residual from d2_1, as in the reference
        d4_1 = relu(self.d4[0](d2_3))
        d4_2 = d4_1 + relu(self.d4[1](d4_1))
        d4_3 = d4_2 + relu(self.d4[2](d4_2))
        d8_1 = relu(self.d8[0](d4_3))
        d8_2 = d8_1 + relu(self.d8[1](d8_1))
        d8_3 = d8_2 + relu(self.d8[2](d8_2))
        d16_1 = relu(self.d16[0](d8_3))
        d16_2 = d16_1 + relu(self.d16[1](d16_1))
        u8_1 = match_size(lrelu(self.u8[0](d16_2)), d8_3.shape[2:])
        u8_2 = lrelu(self.u8[1](torch.cat([d8_3, u8_1], dim=1)))
        u8_3 = u8_2 + lrelu(self.u8[2](u8_2))
        u4_1 = match_size(lrelu(self.u4[0](u8_3)), d4_3.shape[2:])
        u4_2 = lrelu(self.u4[1](torch.cat([d4_3, u4_1], dim=1)))
        u4_3 = u4_2 + lrelu(self.u4[2](u4_2))
        u2_1 = match_size(lrelu(self.u2[0](u4_3)), d2_3.shape[2:])
        u2_2 = self.u2[1](torch.cat([d2_3, u2_1], dim=1))
        return self.u2[2](u2_2)


class VoxelMorphUNet(nn.Module):
    """VoxelMorph's ``VxmDense`` U-net and flow head (legacy torch v0.2 layout).

    Encoder ``enc`` (default [16, 32, 32, 32]), each conv + LeakyReLU(0.2) then max-pool; decoder ``dec``
    (default [32, 32, 32, 32, 32, 16, 16]): one conv per level, nearest up-sampling x2, concatenated skip;
    the remaining ``dec`` entries are extra full-resolution convs; flow conv ``-> 3`` initialised
    N(0, 1e-5), bias 0. Input ``B x 2 x D x H x W``, any size (padded to a multiple of 16 inside, cropped
    back); output ``B x 3 x D x H x W`` (voxel units).
    """

    def __init__(self, enc: Sequence[int] = (16, 32, 32, 32), dec: Sequence[int] = (32, 32, 32, 32, 32, 16, 16)):
        super().__init__()
        levels = len(enc)
        if len(dec) < levels:
            raise ValueError(f"VoxelMorph needs at least {levels} decoder widths (got {len(dec)})")
        self.encoder = nn.ModuleList()
        channels = 2
        skips = []
        for width in enc:
            self.encoder.append(conv(channels, width))
            skips.append(width)
            channels = width
        self.decoder = nn.ModuleList()
        for level in range(levels):
            self.decoder.append(conv(channels, dec[level]))
            channels = dec[level] + skips[levels - 1 - level]
        self.extra = nn.ModuleList()
        for width in dec[levels:]:
            self.extra.append(conv(channels, width))
            channels = width
        self.flow = conv(channels, 3)
        nn.init.normal_(self.flow.weight, std=1e-5)
        nn.init.zeros_(self.flow.bias)
        self.multiple = 2**levels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        shape = images.shape[2:]
        padded = [(-n) % self.multiple for n in shape]
        x = F.pad(images, [0, padded[2], 0, padded[1], 0, padded[0]])
        skips = []
        for layer in self.encoder:
            x = F.leaky_relu(layer(x), 0.2)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        for layer in self.decoder:
            x = F.leaky_relu(layer(x), 0.2)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = torch.cat([x, skips.pop()], dim=1)
        for layer in self.extra:
            x = F.leaky_relu(layer(x), 0.2)
        return self.flow(x)[..., : shape[0], : shape[1], : shape[2]]
