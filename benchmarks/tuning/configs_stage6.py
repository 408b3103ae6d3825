from avsm.losses import LNCCScale

FINE = [LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1)]
FINER = [LNCCScale(1 / 32, 0.3, 1), LNCCScale(1 / 16, 0.7, 1)]
S_SMALL = (0.02, 0.04, 0.06, 0.08, 0.1)
S_MIDSMALL = (0.015, 0.03, 0.045, 0.06, 0.075)
S_SMALLER = (0.01, 0.02, 0.03, 0.04, 0.05)
CONFIGS = {
    "accurate_now": dict(),
    "smidsmall_reg50": dict(lncc_scales=FINE, sigma_fractions=S_MIDSMALL, regularisation=50.0),
    "smidsmall_reg50_finer": dict(lncc_scales=FINER, sigma_fractions=S_MIDSMALL, regularisation=50.0),
    "ssmaller_reg100_levels": dict(lncc_scales=FINE, sigma_fractions=S_SMALLER, regularisation=100.0,
                                   levels=((0.5, 40), (1.0, 60))),
    "ws1.5_smidsmall_reg50": dict(working_spacing=1.5, lncc_scales=FINE, sigma_fractions=S_MIDSMALL, regularisation=50.0),
    "ws1.5_smidsmall_reg50_finer": dict(working_spacing=1.5, lncc_scales=FINER, sigma_fractions=S_MIDSMALL,
                                        regularisation=50.0),
    "ws1_smidsmall_reg50_it40": dict(working_spacing=1.0, lncc_scales=FINE, sigma_fractions=S_MIDSMALL,
                                     regularisation=50.0, iterations=40),
}
CONFIGS.update({
    "smidsmall_reg50_it90": dict(lncc_scales=FINE, sigma_fractions=S_MIDSMALL, regularisation=50.0, iterations=90),
    "smidsmall_reg50_levels": dict(lncc_scales=FINE, sigma_fractions=S_MIDSMALL, regularisation=50.0,
                                   levels=((0.5, 30), (1.0, 60))),
    "smidsmall_reg30": dict(lncc_scales=FINE, sigma_fractions=S_MIDSMALL, regularisation=30.0),
    "ws1.5_smidsmall_reg50_it40": dict(working_spacing=1.5, lncc_scales=FINE, sigma_fractions=S_MIDSMALL,
                                       regularisation=50.0, iterations=40),
})
