"""Two composed vSVF steps (``VSVFSettings.refinement``), finer LNCC windows, a finer momentum grid.

``SHIPPED`` is the accurate preset when this sweep began (sigmas 0.01-0.05, regularisation 50, fold penalty 1e4 at
the map cells' corners, 60 iterations on the 1.5 mm working grid, momentum on 3 mm). A refinement starts from the
step before's map with a fresh momentum, so its regulariser does not pay again for that deformation, and its fold
penalty sees the composed map. Rows named ``lin_*`` score the warped labels by per-label linear interpolation, the
others by nearest neighbour.
"""
from avsm.losses import LNCCScale
from avsm.optimisation import VSVFSettings

FINE = (LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1))
FINER = (LNCCScale(1 / 32, 0.3, 1), LNCCScale(1 / 16, 0.7, 1))
THREE = (LNCCScale(1 / 32, 0.2, 1), LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.5, 1))
S_SMALLER = (0.01, 0.02, 0.03, 0.04, 0.05)
S_075 = (0.0075, 0.015, 0.0225, 0.03, 0.0375)
S_SMALLEST = (0.005, 0.01, 0.015, 0.02, 0.025)
# the accurate preset when this sweep began (one step), spelled out so that these rows can be rerun
SHIPPED = dict(sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4, fold_margin=0.2)
BASE = dict(SHIPPED, working_spacing=1.5, lncc_scales=FINE)


def then(**changes) -> VSVFSettings:
    """The shipped step with ``changes``, as a refinement."""
    return VSVFSettings(**dict(SHIPPED, **changes))


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
CONFIGS.update({  # the images at 1 mm, the momentum on the same 2.25 mm grid as MF15
    "lin_s075_ws1_mf2.25_levels": dict(MF15, working_spacing=1.0, map_resolution_factor=2.25,
                                       levels=((2 / 3, 50), (1.0, 20))),
    "lin_s075_mf1.5_it90": dict(MF15, iterations=90),
})
S_BRAIN = (0.02, 0.04, 0.06, 0.08, 0.1)
CONFIGS.update({  # a coarse step (large sigmas) first, then the fine step from its map
    "lin_coarse30_then_mf1.5": dict(BASE, sigma_fractions=S_BRAIN, iterations=30,
                                    refinement=then(sigma_fractions=S_075, map_resolution_factor=1.5)),
})
CONFIGS.update({
    "lin_coarse30half_then_mf1.5": dict(BASE, sigma_fractions=S_BRAIN, levels=((0.5, 30),),
                                        refinement=then(sigma_fractions=S_075, map_resolution_factor=1.5)),
    "lin_coarse30_then_mf2": dict(BASE, sigma_fractions=S_BRAIN, iterations=30, refinement=then()),
})
CONFIGS.update({
    "lin_coarse30_then_mf1.5_ts5": dict(BASE, sigma_fractions=S_BRAIN, iterations=30, search_time_steps=5,
                                        refinement=then(sigma_fractions=S_075, map_resolution_factor=1.5,
                                                        search_time_steps=5)),
    "lin_coarse30_then_mf1.5_it45": dict(BASE, sigma_fractions=S_BRAIN, iterations=30,
                                         refinement=then(sigma_fractions=S_075, map_resolution_factor=1.5,
                                                         iterations=45)),
})
CONFIGS.update({
    "lin_coarse30_then_mf1.5_ts3": dict(BASE, sigma_fractions=S_BRAIN, iterations=30, search_time_steps=3,
                                        refinement=then(sigma_fractions=S_075, map_resolution_factor=1.5,
                                                        search_time_steps=3)),
})
