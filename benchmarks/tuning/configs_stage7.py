"""Smaller sigmas on the 1.5 mm grid, held off folding by a penalty on det J below a margin (``fold_penalty``).

The penalty took four forms while this sweep ran; only the last is in the code, and the rows of the others in
stage7.csv cannot be rerun from their names: ``*_mapgrid`` took det J on the 3 mm map grid by central differences,
``*_fpw*`` at the 1.5 mm working voxels by central differences, ``*_cells*`` at the working grid's cells by forward
differences; each missed folds that the 1 mm output showed. ``*_corners*`` (shipped) takes the exact det J of the
trilinear map at the 8 corners of every map cell, where such a map folds first.
"""
from avsm.losses import LNCCScale

FINE = [LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1)]
FINER = [LNCCScale(1 / 32, 0.3, 1), LNCCScale(1 / 16, 0.7, 1)]
S_MIDSMALL = (0.015, 0.03, 0.045, 0.06, 0.075)
S_SMALLER = (0.01, 0.02, 0.03, 0.04, 0.05)
S_SMALLEST = (0.005, 0.01, 0.015, 0.02, 0.025)
BASE = dict(working_spacing=1.5, lncc_scales=FINE)
CONFIGS = {
    "accurate_before": dict(BASE, sigma_fractions=S_MIDSMALL, regularisation=50.0),
    "ssmaller_reg50": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0),
    "ssmaller_reg50_finer": dict(BASE, lncc_scales=FINER, sigma_fractions=S_SMALLER, regularisation=50.0),
    "ssmaller_reg50_fpw1000": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1000.0),
    "ssmaller_reg50_fpw1e4": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4),
    "ssmallest_reg50_fpw1e4": dict(BASE, sigma_fractions=S_SMALLEST, regularisation=50.0, fold_penalty=1e4),
    "ssmaller_reg50_fpw1e4_it90": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4,
                                       iterations=90),
    "ssmaller_reg20_fpw1e4": dict(BASE, sigma_fractions=S_SMALLER, regularisation=20.0, fold_penalty=1e4),
}
CONFIGS.update({
    "ssmaller_reg50_fpw1e5": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e5),
    "ssmaller_reg50_fpw1e4_m0.4": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4,
                                       fold_margin=0.4),
})
CONFIGS.update({  # the penalty on each cell's det J from forward differences (the shipped fold_penalty)
    "ssmaller_reg50_cells1e4": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4),
})
CONFIGS.update({
    "ssmaller_reg50_cells1e4_m0.5": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4,
                                         fold_margin=0.5),
})
CONFIGS.update({
    "ssmaller_reg50_cells1e5": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e5),
    "ssmaller_reg50_cells1e4_m0.3": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4,
                                         fold_margin=0.3),
})
CONFIGS.update({
    "ssmaller_reg50_cells1e5_m0.3": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e5,
                                         fold_margin=0.3),
})
CONFIGS.update({  # the penalty at the 8 corners of every map cell (the shipped fold_penalty)
    "ssmaller_reg50_corners1e4": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4),
})
S_SMALLER_075 = (0.0075, 0.015, 0.0225, 0.03, 0.0375)
CONFIGS.update({
    "ssmaller_reg50_corners1e4_mf1.5": dict(BASE, sigma_fractions=S_SMALLER, regularisation=50.0, fold_penalty=1e4,
                                            map_resolution_factor=1.5),
    "s0.0075_reg50_corners1e4_mf1.5": dict(BASE, sigma_fractions=S_SMALLER_075, regularisation=50.0, fold_penalty=1e4,
                                           map_resolution_factor=1.5),
    "ssmaller_reg20_corners1e4": dict(BASE, sigma_fractions=S_SMALLER, regularisation=20.0, fold_penalty=1e4),
})
CONFIGS.update({
    "s0.0075_reg50_corners1e4": dict(BASE, sigma_fractions=S_SMALLER_075, regularisation=50.0, fold_penalty=1e4),
})
