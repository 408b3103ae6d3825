"""``train.affine_refine``: the deformable stages train from the refined affine, as ``avsm.register`` runs them.

:func:`avsm.optimisation.refine_affines` refines a batch of affines pair by pair; checked against known
translations, then through the objective (a momentum network that outputs zero leaves the affine alone, so
the stage's similarity is the affine's) and a tiny training run. A negative count is refused by name.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avsm.errors import AVSMError
from avsm.geometry import Grid, physical_points
from avsm.maps import apply_affine, warp_image
from avsm.networks import NetworkConfig, build_network
from avsm.optimisation import refine_affines
from avsm.training import load_config, train
from avsm.training.config import TrainSettings
from avsm.training.objective import Objective
from test_training import tiny_config

GRID = Grid(shape=(40, 40, 40), spacing=(2.0, 2.0, 2.0), origin=(-39.0, -39.0, -39.0),
            direction=tuple(np.eye(3).ravel()))
SHIFTS = torch.tensor([[5.0, -3.0, 2.0], [-4.0, 2.0, 6.0]])  # mm, true fixed -> moving translation of each pair


def _blobs() -> torch.Tensor:
    """``1 x 1 x D x H x W`` smooth, asymmetric image in [0, 1]: an ellipsoid and a smaller off-centre blob."""
    x, y, z = physical_points(GRID)[0]
    image = torch.exp(-(x**2 / 400 + y**2 / 250 + z**2 / 150)) + 0.6 * torch.exp(-((x - 12)**2 + (y + 8)**2 + z**2) / 60)
    return (image / image.max())[None, None]


def _shifted_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed: the blobs twice; moving b: the blobs moved by SHIFTS[b], so that moving(x + SHIFTS[b]) = fixed(x)."""
    fixed = _blobs()
    points = physical_points(GRID)
    moving = [warp_image(fixed, GRID, apply_affine(torch.eye(3)[None], -shift[None], points)) for shift in SHIFTS]
    return torch.cat([fixed, fixed]), torch.cat(moving)


def test_refine_affines_recovers_each_pairs_translation():
    fixed, moving = _shifted_pairs()
    matrix, translation = torch.eye(3).expand(2, 3, 3).clone(), torch.zeros(2, 3)
    before = (fixed.clone(), moving.clone(), matrix.clone(), translation.clone())
    refined_matrix, refined_translation = refine_affines(fixed, moving, GRID, matrix, translation, 30)
    assert refined_matrix.shape == (2, 3, 3) and refined_translation.shape == (2, 3)
    assert refined_matrix.dtype == matrix.dtype and not refined_matrix.requires_grad
    points = physical_points(GRID).reshape(3, -1)[:, fixed[0, 0].reshape(-1) > 0.3]  # the blobs' voxels
    for b in range(2):  # mean distance between where the refined and the true map send them
        error = (refined_matrix[b] @ points + (refined_translation[b] - SHIFTS[b])[:, None] - points).norm(dim=0).mean()
        # measured: 6.2 and 7.5 mm from the identity -> 0.69 and 0.93 mm
        assert error < 0.2 * SHIFTS[b].norm(), (b, float(error))
    for original, now in zip(before, (fixed, moving, matrix, translation)):
        assert torch.equal(original, now)  # the inputs are not touched


def test_zero_iterations_return_the_affines_unchanged():
    fixed, moving = _shifted_pairs()
    matrix, translation = torch.eye(3).expand(2, 3, 3) * 1.01, SHIFTS * 0.5
    same_matrix, same_translation = refine_affines(fixed, moving, GRID, matrix, translation, 0)
    assert torch.equal(same_matrix, matrix) and torch.equal(same_translation, translation)


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
    plain = Objective(network, GRID, TrainSettings(**settings))(fixed, moving, "deformable", 0)[1]
    refined = Objective(network, GRID, TrainSettings(affine_refine=30, **settings))(fixed, moving, "deformable", 0)[1]
    # zero momentum: phi is the affine, so the similarity is the affine's, and refinement must improve it
    assert refined["regulariser"] == pytest.approx(0.0, abs=1e-8)
    assert refined["similarity"] < plain["similarity"] - 0.05, (plain["similarity"], refined["similarity"])


def test_a_tiny_run_trains_from_the_refined_affine(tmp_path):
    path = tiny_config(tmp_path, affine_epochs=0, multi_epochs=0, deformable_epochs=1, extra="affine_refine = 3\n")
    assert load_config(path).train.affine_refine == 3
    model = train(path)
    assert model.exists()


def test_a_negative_refinement_count_is_refused_by_name(tmp_path):
    with pytest.raises(AVSMError, match=r"config field train.affine_refine must be >= 0 \(got -1\)"):
        load_config(tiny_config(tmp_path, extra="affine_refine = -1\n"))
