"""``Conv3d`` that runs oneDNN's kernel on the CPU whenever it applies.

PyTorch picks oneDNN for a CPU convolution by a heuristic written for 2-D inputs: with batch 1 it
requires N * C * D * H > 20480 for a 5-D input, so most 3x3x3 layers of a registration U-net (a few
channels, tens of voxels per side) fall to the im2col ``slow_conv3d``, 10-30x slower on 2 threads
(16 -> 16 channels at 32 x 36 x 32: 43 ms against 1.6 ms, same result to 1e-6). This layer calls the
oneDNN kernel directly (forward and backward) for float32 CPU tensors and defers to ``nn.Conv3d``
everywhere else (GPU, other dtypes, oneDNN disabled). Parameters and state dicts are nn.Conv3d's.
"""
from __future__ import annotations

import torch
from torch import nn


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` with zero padding given as sizes; see the module docstring for the CPU path."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.ops.aten.mkldnn_convolution(input.contiguous(), weight, bias, list(self.padding),
                                                     list(self.stride), list(self.dilation), self.groups)
        return super()._conv_forward(input, weight, bias)
