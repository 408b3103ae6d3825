"""Do the two images show the same contrast? With ``similarity="auto"`` the pipeline asks this once the images are
roughly aligned (by the networks or the mk-LNCC affine), and goes on by local correlation or switches to mutual
information (``avsm.methods.SIMILARITIES``).

The measure is the sign of the local correlation: over windows of about 15 mm inside the fixed image's foreground
(where the moving image was acquired), the mean of the local correlation coefficient divided by the mean of its
magnitude. Two scans of one contrast correlate positively almost everywhere once aligned: 0.95-1.0 on skull-stripped
and whole-head T1, post-contrast T1, raw T1 at two studies. Across T1 and T2 or FLAIR the tissues' order changes and
windows disagree in sign: -0.19 to 0.89 (``benchmarks/tuning/contrast_agreement.md``, no pair of the benchmark
tables). One skull-stripped FLAIR scored 0.93 against its T1: its windows agree as those of one contrast do, and local
correlation registers such pairs (the cross-contrast table of docs/benchmarks.md). A misaligned pair of one contrast
also scores low, and then mutual information, which assumes no relation of intensities, is the safer way on.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..geometry import Grid, physical_points, physical_to_normalised
from ..losses import box_sum
from ..maps import affine_after_map, inside_box, warp_image_at
from .affine_opt import AffineParameters

WINDOW_MM = 15.0
SAME_CONTRAST_MIN = 0.92  # between one contrast (0.95 and above) and two (0.89 and below, but one)
FOREGROUND = 0.05  # fixed voxels above this normalised intensity are the head or the brain


def correlation_sign_agreement(fixed: torch.Tensor, warped: torch.Tensor, inside: torch.Tensor, size: int,
                               eps: float = 1e-4) -> float:
    """mean(lncc) / mean(|lncc|) over ``size^3`` windows (stride 1, no padding) that lie in the fixed foreground and
    inside the moving image's field of view and where both images vary. ``fixed``, ``warped``, ``inside``:
    ``1 x 1 x D x H x W``, intensities normalised to [0, 1]. 1: every window correlates positively; -1: every window
    negatively; 0 when no window qualifies."""
    n = float(size ** 3)
    channels = torch.cat([fixed, warped, fixed * fixed, warped * warped, fixed * warped,
                          (fixed > FOREGROUND).to(fixed.dtype), inside.to(fixed.dtype)], dim=1)
    s_f, s_w, s_ff, s_ww, s_fw, foreground, acquired = box_sum(channels, size).unbind(dim=1)
    covariance = s_fw - s_f * s_w / n
    var_f = s_ff - s_f * s_f / n
    var_w = s_ww - s_w * s_w / n
    valid = (foreground > 0.5 * n) & (acquired > 0.99 * n) & (var_f > eps * n) & (var_w > eps * n)
    if not bool(valid.any()):
        return 0.0
    correlation = (covariance / torch.sqrt(var_f * var_w).clamp_min(1e-12))[valid]
    return float(correlation.mean() / correlation.abs().mean().clamp_min(1e-12))


def contrast_agreement(fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
                       affine: AffineParameters, pullback_map: Optional[torch.Tensor] = None,
                       map_grid: Optional[Grid] = None) -> float:
    """:func:`correlation_sign_agreement` of the fixed image and the moving one pulled back through ``affine`` (after
    ``pullback_map``, psi^{-1} as ``1 x 3 x d x h x w`` LPS points on ``map_grid``, when given), on the fixed working
    grid. Images ``1 x 1 x D x H x W`` normalised to [0, 1] on their working grids."""
    with torch.no_grad():
        matrix, translation = affine.tensors(fixed.device)
        points = affine_after_map(matrix, translation, physical_points(fixed_grid, fixed.device), pullback_map, map_grid)
        coordinates = physical_to_normalised(points, moving_grid)
        warped = warp_image_at(moving, moving_grid, coordinates)
        inside = inside_box(coordinates, moving_grid)
        size = max(3, int(round(WINDOW_MM / float(min(fixed_grid.spacing)))))
        return correlation_sign_agreement(fixed, warped, inside, size)
