"""The trainer's mk-LNCC windows: ``train.lncc_window_ratios / lncc_weights / lncc_dilations`` reach the
objective's similarity (the reference set by grid size when empty), and bad windows are refused by name."""
from __future__ import annotations

import pytest
import torch

from avsm.errors import AVSMError
from avsm.losses import LNCC_SETS, LNCCScale, MultiKernelLNCC
from avsm.networks import NetworkConfig, build_network
from avsm.training import load_config
from avsm.training.objective import Objective
from test_training import tiny_config
from test_training_dice import GRID, _pair

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
