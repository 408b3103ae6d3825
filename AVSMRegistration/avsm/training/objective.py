"""Training losses of the curriculum (AVSM §2.1-2.2 and the authors' code; VoxelMorph TMI 2019).

Stages: ``affine`` (1 step), ``affine_multi`` (T steps, symmetric), ``deformable`` (vSVF 1 step or
VoxelMorph; affine network frozen), ``deformable_multi`` (vSVF S steps, symmetric). In a symmetric stage
the batch is doubled to [(moving -> fixed), (fixed -> moving)]. With ``dice_weight`` > 0 and labelled pairs,
a soft Dice loss on one-hot training labels pulled through the stage's map (the affine map in the affine
stages, the full map after) is added, for AVSM as for VoxelMorph (the latter as in VoxelMorph's paper).

Units: maps are physical (mm); translations and map differences are divided by the grid's mean extent so
that the weights mean what they mean in the paper's [0, 1] (vSVF) or [-1, 1] (affine) coordinates up to a
constant factor.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..geometry import Grid, physical_points
from ..losses import MultiKernelLNCC, local_ncc_loss, mse_loss, ncc_loss
from ..maps import compose, sample
from ..networks import RegistrationNetwork
from ..networks.affine_net import batched_affine_map, grid_centre_and_extent
from ..optimisation.affine_opt import refine_affines
from .config import TrainSettings

STAGES = ("affine", "affine_multi", "deformable", "deformable_multi")


def affine_regulariser_weight(epoch: int, c: float, k: float) -> float:
    """lambda_ar(n) = C K / (K + e^{n / K}) (AVSM §2.1; C = 10, K = 4 in the paper)."""
    return c * k / (k + math.exp(epoch / k))


def soft_dice_loss(warped_onehot: torch.Tensor, fixed_onehot: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    overlap = (warped_onehot * fixed_onehot).sum(dim=(2, 3, 4))
    total = (warped_onehot + fixed_onehot).sum(dim=(2, 3, 4))
    return 1.0 - (2.0 * overlap / total.clamp_min(eps)).mean()


class Objective(nn.Module):
    """``forward(batch, stage, epoch) -> (loss, stats)``; wrapped by DDP as a whole."""

    def __init__(self, network: RegistrationNetwork, grid: Grid, settings: TrainSettings):
        super().__init__()
        self.network = network
        self.grid = grid
        self.settings = settings
        self.extent = grid_centre_and_extent(grid)[1]
        self.lncc = MultiKernelLNCC(settings.lncc_scales())

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, stage: str, epoch: int,
                fixed_onehot: Optional[torch.Tensor] = None, moving_onehot: Optional[torch.Tensor] = None):
        s, net, grid = self.settings, self.network, self.grid
        symmetric = stage in ("affine_multi", "deformable_multi")
        if symmetric:
            fixed, moving = torch.cat([fixed, moving]), torch.cat([moving, fixed])
            if fixed_onehot is not None:
                fixed_onehot, moving_onehot = torch.cat([fixed_onehot, moving_onehot]), torch.cat([moving_onehot, fixed_onehot])
        batch = fixed.shape[0]
        eye = torch.eye(3, dtype=fixed.dtype, device=fixed.device).expand(batch, 3, 3)
        zero = torch.zeros(batch, 3, dtype=fixed.dtype, device=fixed.device)
        stats = {}
        if stage.startswith("affine"):
            steps = s.step_counts(stage)[0]
            affine = net.affine(fixed, grid, moving, grid, eye, zero, steps)
            sim = ncc_loss(affine.warped, fixed) if epoch < s.ncc_epochs else self.lncc(affine.warped, fixed)
            weight = affine_regulariser_weight(epoch, s.affine_reg_c, s.affine_reg_k)
            reg = weight * (((affine.matrix - eye) ** 2).sum(dim=(1, 2))
                            + ((affine.translation / self.extent) ** 2).sum(dim=1)).mean()
            loss = sim + reg
            stats.update(similarity=sim.item(), regulariser=reg.item(), affine_reg_weight=weight)
            if symmetric:
                a_st, a_ts = affine.matrix.chunk(2)
                b_st, b_ts = affine.translation.chunk(2)
                sym = (((a_st @ a_ts - eye[: batch // 2]) ** 2).sum(dim=(1, 2))
                       + ((((a_st @ b_ts[..., None])[..., 0] + b_st) / self.extent) ** 2).sum(dim=1)).mean()
                loss = loss + s.affine_sym_weight * sym
                stats["symmetry"] = sym.item()
            if s.dice_weight > 0 and fixed_onehot is not None:
                phi = batched_affine_map(affine.matrix, affine.translation, grid)
                loss = loss + self._dice_term(phi, fixed_onehot, moving_onehot, stats)
            stats["loss"] = loss.item()
            return loss, stats
        with torch.no_grad():
            affine = net.affine(fixed, grid, moving, grid, eye, zero, s.train_affine_steps)
        matrix, translation = refine_affines(fixed, moving, grid, affine.matrix, affine.translation, s.affine_refine)
        steps = s.step_counts(stage)[1]
        out = net.deformable(fixed, grid, moving, grid, matrix, translation, steps)
        if net.config.method == "avsm":
            sim = sum(self.lncc(warped, fixed) for warped in out.step_warped)  # loss of every step, as the authors' code
            reg = s.vsvf_regularisation * sum(out.step_regularisers)
        else:
            sim = local_ncc_loss(out.warped, fixed) if s.voxelmorph_loss == "ncc" else mse_loss(out.warped, fixed)
            reg = s.voxelmorph_regularisation * out.step_regularisers[0]
        loss = sim + reg
        stats.update(similarity=float(sim.item()), regulariser=float(reg.item()))
        if symmetric:
            phi_st, phi_ts = out.phi.chunk(2)
            identity = physical_points(grid, device=fixed.device, dtype=fixed.dtype)
            sym = (((compose(phi_st, grid, phi_ts) - identity) / self.extent) ** 2).mean()
            loss = loss + s.vsvf_sym_weight * sym
            stats["symmetry"] = sym.item()
        if s.dice_weight > 0 and fixed_onehot is not None:
            loss = loss + self._dice_term(out.phi, fixed_onehot, moving_onehot, stats)
        stats["loss"] = loss.item()
        return loss, stats

    def _dice_term(self, phi: torch.Tensor, fixed_onehot: torch.Tensor, moving_onehot: torch.Tensor,
                   stats: dict) -> torch.Tensor:
        """dice_weight x soft Dice of the moving one-hot labels pulled through ``phi``; logged in ``stats``."""
        dice = soft_dice_loss(sample(moving_onehot, self.grid, phi), fixed_onehot)
        stats["dice_loss"] = dice.item()
        return self.settings.dice_weight * dice
