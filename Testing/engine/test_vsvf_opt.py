"""avsm.optimisation.vsvf_opt: instance optimisation as one more vSVF step composed after a prior (network)
deformation.

Closed forms: a translation prior with its exact inverse; zero iterations must return the prior itself,
and iterations must recover what the prior missed of a known shift.
"""
from __future__ import annotations

import torch

from avsm.geometry import Grid, coarser_grid, physical_points
from avsm.maps import compose, warp_image
from avsm.optimisation import AffineParameters, PriorDeformation, VSVFSettings, optimise_vsvf

from engine_fixtures import blob_image
from avsm.geometry import image_to_tensor


def _pair(shift_mm):
    """A smooth image on an oblique-free grid and the same image moved by ``shift_mm`` (x, y, z)."""
    image = blob_image(size=(32, 32, 32), spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0))
    grid = Grid.of_image(image)
    moving = image_to_tensor(image)
    moving = (moving - moving.min()) / (moving.max() - moving.min())
    truth = physical_points(grid) + torch.tensor(shift_mm).view(1, 3, 1, 1, 1)
    fixed = warp_image(moving, grid, truth)  # fixed(x) = moving(x + shift)
    return fixed, moving, grid


def _translation_prior(grid: Grid, shift_mm) -> PriorDeformation:
    shift = torch.tensor(shift_mm, dtype=torch.float32).view(1, 3, 1, 1, 1)
    points = physical_points(grid)
    return PriorDeformation(points + shift, points - shift, grid)


def test_zero_iterations_return_the_prior_and_its_inverse():
    fixed, moving, grid = _pair((3.0, -2.0, 1.0))
    map_grid = coarser_grid(grid, 2.0)
    prior = _translation_prior(map_grid, (1.5, -1.0, 0.5))
    result = optimise_vsvf(fixed, grid, moving, grid, AffineParameters.translation_only((0.0, 0.0, 0.0)), VSVFSettings(iterations=0), prior=prior)
    assert result.map_grid.shape == map_grid.shape
    torch.testing.assert_close(result.pullback_map, prior.pullback_map, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.pushforward_map, prior.pushforward_map, atol=1e-4, rtol=0)


def test_refinement_recovers_the_shift_the_prior_missed():
    shift = (3.0, -2.0, 1.0)
    fixed, moving, grid = _pair(shift)
    map_grid = coarser_grid(grid, 2.0)
    prior = _translation_prior(map_grid, (1.5, -1.0, 0.5))  # half the true shift
    settings = VSVFSettings(iterations=25, sigma_fractions=(0.2, 0.3), sigma_weights=(0.5, 0.5), regularisation=0.1,
                            lncc_scales=None)
    result = optimise_vsvf(fixed, grid, moving, grid, AffineParameters.translation_only((0.0, 0.0, 0.0)), settings, prior=prior)
    assert result.losses[-1][0] < result.losses[0][0]
    truth = physical_points(map_grid) + torch.tensor(shift).view(1, 3, 1, 1, 1)
    centre = (slice(None), slice(None), slice(4, -4), slice(4, -4), slice(4, -4))
    prior_error = (prior.pullback_map - truth)[centre].norm(dim=1).mean()
    refined_error = (result.pullback_map - truth)[centre].norm(dim=1).mean()
    assert refined_error < 0.5 * prior_error
    # the composed inverse undoes the composed deformation (psi ∘ psi^{-1} = id) inside the domain
    round_trip = compose(result.pushforward_map, map_grid, result.pullback_map)
    assert (round_trip - physical_points(map_grid))[centre].norm(dim=1).mean() < 0.1


def test_normalised_gradient_fields_recover_a_shift_across_a_non_monotonic_change_of_contrast():
    """T1 against a FLAIR-like image: the moving intensities folded about mid-range (no local intensity relation
    holds across the fold); the shift is still found from where the edges lie."""
    shift = (3.0, -2.0, 1.0)
    fixed, moving, grid = _pair(shift)
    folded = (moving - 0.5).abs() * 2
    settings = VSVFSettings(iterations=25, sigma_fractions=(0.2, 0.3), sigma_weights=(0.5, 0.5), regularisation=0.1)
    result = optimise_vsvf(fixed, grid, folded, grid, AffineParameters.translation_only((0.0, 0.0, 0.0)), settings,
                           similarity="ngf")
    assert result.losses[-1][0] < result.losses[0][0]
    truth = physical_points(result.map_grid) + torch.tensor(shift).view(1, 3, 1, 1, 1)
    centre = (slice(None), slice(None), slice(4, -4), slice(4, -4), slice(4, -4))
    start_error = (physical_points(result.map_grid) - truth)[centre].norm(dim=1).mean()
    error = (result.pullback_map - truth)[centre].norm(dim=1).mean()
    assert error < 0.4 * start_error, (float(error), float(start_error))


def test_fold_penalty_of_linear_maps_in_closed_form():
    from avsm.optimisation.vsvf_opt import fold_penalty

    grid = Grid(shape=(6, 7, 5), spacing=(1.5, 2.0, 1.0), origin=(-3.0, 4.0, 1.0),
                direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))  # axes swapped: det of the direction -1
    points = physical_points(grid, dtype=torch.float64)
    for scale, expected in ((1.0, 0.0), (0.5, 0.0), (0.1, 0.01), (-0.3, 0.25)):
        psi_inverse = points.clone()
        psi_inverse[:, 1] = scale * points[:, 1] + 2.0  # det J = scale everywhere
        assert abs(float(fold_penalty(psi_inverse, grid, margin=0.2)) - expected) < 1e-9, scale


def test_fold_penalty_passes_gradcheck():
    from avsm.optimisation.vsvf_opt import fold_penalty

    grid = Grid(shape=(4, 5, 4), spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(torch.eye(3).flatten().tolist()))
    generator = torch.Generator().manual_seed(0)
    squeezed = physical_points(grid, dtype=torch.float64) * torch.tensor([1.0, 0.1, 1.0], dtype=torch.float64).view(1, 3, 1, 1, 1)
    deformation = (squeezed + 0.05 * torch.randn(squeezed.shape, generator=generator, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: fold_penalty(d, grid, margin=0.3), (deformation,))
