"""The training objective (avsm.training.objective): the soft Dice loss (closed forms; it reaches the AVSM networks
in the affine stages through the affine map and in the deformable stages through the full map), the configured
mk-LNCC windows (``train.lncc_window_ratios / lncc_weights / lncc_dilations``, the reference set by grid size
when empty, bad windows refused by name), and the deformable stages starting from the refined affine
(``train.affine_refine``: a momentum network that outputs zero leaves the affine alone, so the stage's similarity
is the affine's)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avsm.errors import AVSMError
from avsm.geometry import Grid
from avsm.losses import LNCC_SETS, LNCCScale, MultiKernelLNCC
from avsm.maps import sample
from avsm.networks import NetworkConfig, build_network
from avsm.networks.affine_net import batched_affine_map
from avsm.training import load_config
from avsm.training.config import TrainSettings
from avsm.training.objective import Objective, soft_dice_loss
from test_affine_opt import GRID as REFINE_GRID, _shifted_pairs
from test_trainer import tiny_config

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


FINE = "\nlncc_window_ratios = [0.0625, 0.125]\nlncc_weights = [0.3, 0.7]\nlncc_dilations = [1, 2]\nncc_epochs = 0\n"


def test_configured_lncc_windows_are_the_objective_similarity(tmp_path):
    config = load_config(tiny_config(tmp_path, extra=FINE))
    scales = (LNCCScale(0.0625, 0.3, 1), LNCCScale(0.125, 0.7, 2))
    assert config.train.lncc_scales() == scales
    torch.manual_seed(0)
    network = build_network(NetworkConfig(method="avsm", affine_width=2, affine_hidden=4,
                                          momentum_widths=(2, 4, 4, 4, 4), affine_steps=2, time_steps=4))
    fixed, moving, _, _ = _pair()
    _, stats = Objective(network, GRID, config.train)(fixed, moving, "affine", 0)
    eye, zero = torch.eye(3)[None], torch.zeros(1, 3)
    with torch.no_grad():
        warped = network.affine(fixed, GRID, moving, GRID, eye, zero, 1).warped
    configured = MultiKernelLNCC(scales)(warped, fixed).item()
    reference = MultiKernelLNCC()(warped, fixed).item()  # 16 voxels: one window of 1/2 (LNCC_SETS[2])
    assert MultiKernelLNCC().scales_for(GRID.shape) == LNCC_SETS[2]
    assert stats["similarity"] == pytest.approx(configured, rel=1e-5)
    assert abs(configured - reference) > 1e-3  # the test tells the two sets apart


def test_empty_lncc_fields_keep_the_reference_set(tmp_path):
    config = load_config(tiny_config(tmp_path))
    assert config.train.lncc_scales() is None
    assert Objective(build_network(NetworkConfig(method="avsm", affine_width=2, affine_hidden=4,
                                                 momentum_widths=(2, 4, 4, 4, 4))), GRID, config.train).lncc.scales is None


@pytest.mark.parametrize("extra, message", [
    ("\nlncc_window_ratios = [0.0625, 0.125]\nlncc_weights = [1.0]\nlncc_dilations = [1, 1]\n",
     r"lncc_window_ratios, lncc_weights and lncc_dilations must have the same length.*lncc_weights: 1"),
    ("\nlncc_window_ratios = [0.0]\nlncc_weights = [1.0]\nlncc_dilations = [1]\n", r"lncc_window_ratios must be in \(0, 1\]"),
    ("\nlncc_window_ratios = [0.5]\nlncc_weights = [-1.0]\nlncc_dilations = [1]\n", r"lncc_weights must be positive"),
    ("\nlncc_window_ratios = [0.5]\nlncc_weights = [1.0]\nlncc_dilations = [0]\n", r"lncc_dilations must be >= 1"),
    ("\nlncc_window_ratios = [0.5]\nlncc_weights = [1.0]\nlncc_dilations = [1.5]\n", r"lncc_dilations\[0\]: expected int"),
])
def test_bad_lncc_windows_are_refused_by_name(tmp_path, extra, message):
    with pytest.raises(AVSMError, match=message):
        load_config(tiny_config(tmp_path, extra=extra))


def _zero_momentum_network():
    torch.manual_seed(0)
    network = build_network(NetworkConfig(method="avsm", affine_width=2, affine_hidden=4,
                                          momentum_widths=(2, 4, 4, 4, 4), affine_steps=1, time_steps=2))
    with torch.no_grad():
        for parameter in network.momentum_net.parameters():
            parameter.zero_()
    return network


def test_the_deformable_stage_starts_from_the_refined_affine():
    fixed, moving = (t[:1] for t in _shifted_pairs())
    network = _zero_momentum_network()
    settings = dict(train_affine_steps=1, train_vsvf_steps=1)
    plain = Objective(network, REFINE_GRID, TrainSettings(**settings))(fixed, moving, "deformable", 0)[1]
    refined = Objective(network, REFINE_GRID, TrainSettings(affine_refine=30, **settings))(fixed, moving, "deformable", 0)[1]
    # zero momentum: phi is the affine, so the similarity is the affine's, and refinement must improve it
    assert refined["regulariser"] == pytest.approx(0.0, abs=1e-8)
    assert refined["similarity"] < plain["similarity"] - 0.05, (plain["similarity"], refined["similarity"])
