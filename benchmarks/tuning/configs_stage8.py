"""A second vSVF step composed after the accurate preset's (``VSVFSettings.refinement``), and finer LNCC windows.

The first step is the shipped accurate preset (sigmas 0.01-0.05, regularisation 50, fold penalty 1e4 at the map
cells' corners, 60 iterations on the 1.5 mm working grid, momentum on 3 mm); the second starts from its map with a
fresh momentum, so its regulariser does not pay again for the first step's deformation, and its fold penalty sees
the composed map.
"""
import dataclasses

from avsm.losses import LNCCScale
from avsm.optimisation import VSVF_OPT_SETTINGS, VSVFSettings

FINE = (LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1))
FINER = (LNCCScale(1 / 32, 0.3, 1), LNCCScale(1 / 16, 0.7, 1))
THREE = (LNCCScale(1 / 32, 0.2, 1), LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.5, 1))
S_SMALLER = (0.01, 0.02, 0.03, 0.04, 0.05)
S_075 = (0.0075, 0.015, 0.0225, 0.03, 0.0375)
S_SMALLEST = (0.005, 0.01, 0.015, 0.02, 0.025)
SHIPPED = {f.name: getattr(VSVF_OPT_SETTINGS, f.name) for f in dataclasses.fields(VSVFSettings)}
BASE = dict(SHIPPED, working_spacing=1.5, lncc_scales=FINE)


def then(**changes) -> VSVFSettings:
    """The shipped step with ``changes``, as a refinement."""
    return dataclasses.replace(VSVF_OPT_SETTINGS, **changes)


CONFIGS = {
    "shipped": dict(BASE),
    "then_same_it40": dict(BASE, refinement=then(iterations=40)),
    "then_s075_mf1.5_it40": dict(BASE, refinement=then(sigma_fractions=S_075, map_resolution_factor=1.5,
                                                       iterations=40)),
    "then_s005_mf1_it40": dict(BASE, refinement=then(sigma_fractions=S_SMALLEST, map_resolution_factor=1.0,
                                                     iterations=40)),
    "then_finer_it40": dict(BASE, refinement=then(lncc_scales=FINER, iterations=40)),
    "three_windows": dict(BASE, lncc_scales=THREE),
}
# with per-label linear interpolation of the warped labels (the rows above: nearest neighbour)
CONFIGS.update({
    "lin_shipped": dict(BASE),
    "lin_s075_mf1.5": dict(BASE, sigma_fractions=S_075, map_resolution_factor=1.5),
    "lin_flat_weights": dict(BASE, sigma_weights=(0.2, 0.2, 0.2, 0.2, 0.2)),
    "lin_it90": dict(BASE, iterations=90),
})
MF15 = dict(BASE, sigma_fractions=S_075, map_resolution_factor=1.5)
CONFIGS.update({
    "lin_s075_mf1.5_finer": dict(MF15, lncc_scales=FINER),
    "lin_s075_mf1.5_lr3": dict(MF15, learning_rate=3.0),
    "lin_s075_mf1.5_reg25": dict(MF15, regularisation=25.0),
    "lin_s075_mf1.5_three": dict(MF15, lncc_scales=THREE),
})
