"""The soft Dice loss of the trainer: its closed forms, and that it reaches the AVSM networks in the affine
stages (through the affine map) and in the deformable stages (through the full map)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avsm.geometry import Grid
from avsm.maps import sample
from avsm.networks import NetworkConfig, build_network
from avsm.networks.affine_net import batched_affine_map
from avsm.training.config import TrainSettings
from avsm.training.objective import Objective, soft_dice_loss

GRID = Grid(shape=(16, 16, 16), spacing=(3.0, 3.0, 3.0), origin=(-22.5, -22.5, -22.5), direction=tuple(np.eye(3).ravel()))


def test_soft_dice_loss_closed_forms():
    a = torch.zeros(1, 2, 4, 4, 4)
    a[:, 0, :2] = 1  # label 1: the first half of the volume
    a[:, 1, 2:] = 1  # label 2: the second half
    assert soft_dice_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(a, a.flip(1)).item() == pytest.approx(1.0, abs=1e-6)  # each label on the other's half
    b = torch.zeros_like(a)
    b[:, 0, :1] = 1  # half of label 1: Dice 2 * 16 / (32 + 16) = 2/3
    b[:, 1, 1:] = 1  # label 2 grown by half: Dice 2 * 32 / (32 + 48) = 4/5
    assert soft_dice_loss(b, a).item() == pytest.approx(1 - (2 / 3 + 4 / 5) / 2, abs=1e-6)


def _pair(shift_voxels: int = 2):
    """Fixed: two boxes (labels 1 and 2) with intensities 0.5 and 1; moving: the same shifted along x."""
    labels = torch.zeros(1, 1, *GRID.shape)
    labels[..., 4:12, 4:12, 3:8] = 1
    labels[..., 4:12, 4:12, 8:13] = 2
    moving_labels = labels.roll(shift_voxels, dims=-1)
    onehot = lambda l: torch.cat([(l == k).float() for k in (1, 2)], dim=1)
    return labels / 2, moving_labels / 2, onehot(labels), onehot(moving_labels)


@pytest.mark.parametrize("stage", ["affine", "affine_multi", "deformable_multi"])
def test_dice_term_is_added_and_reaches_the_trained_network(stage):
    torch.manual_seed(0)
    config = NetworkConfig(method="avsm", affine_width=2, affine_hidden=4, momentum_widths=(2, 4, 4, 4, 4),
                           affine_steps=2, time_steps=4)
    network = build_network(config)
    fixed, moving, fixed_onehot, moving_onehot = _pair()
    with_dice = Objective(network, GRID, TrainSettings(dice_weight=0.7, train_affine_steps=2, train_vsvf_steps=2))
    without = Objective(network, GRID, TrainSettings(dice_weight=0.0, train_affine_steps=2, train_vsvf_steps=2))
    loss, stats = with_dice(fixed, moving, stage, 3, fixed_onehot, moving_onehot)
    base, base_stats = without(fixed, moving, stage, 3, fixed_onehot, moving_onehot)
    assert "dice_loss" not in base_stats and 0.0 < stats["dice_loss"] < 1.0
    assert loss.item() == pytest.approx(base.item() + 0.7 * stats["dice_loss"], rel=1e-5)

    if stage == "affine":  # the Dice of the affine map, by hand
        eye, zero = torch.eye(3).expand(1, 3, 3), torch.zeros(1, 3)
        affine = network.affine(fixed, GRID, moving, GRID, eye, zero, 1)
        phi = batched_affine_map(affine.matrix, affine.translation, GRID)
        assert stats["dice_loss"] == pytest.approx(soft_dice_loss(sample(moving_onehot, GRID, phi), fixed_onehot).item(), rel=1e-5)

    # the Dice term alone has a gradient in the parameters the stage trains
    network.zero_grad()
    (loss - base).backward()
    trained = "affine_net." if stage.startswith("affine") else "momentum_net."
    grads = {name: p.grad for name, p in network.named_parameters() if p.grad is not None}
    assert any(name.startswith(trained) and g.abs().sum() > 0 for name, g in grads.items())
    if not stage.startswith("affine"):  # the affine network is frozen (run without gradient) in the deformable stages
        assert not any(name.startswith("affine_net.") and g.abs().sum() > 0 for name, g in grads.items())
