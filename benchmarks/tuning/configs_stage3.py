from avsm.losses import LNCCScale

FINE = [LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1)]
S_SMALL = (0.02, 0.04, 0.06, 0.08, 0.1)
S_SMALLER = (0.01, 0.02, 0.03, 0.04, 0.05)
S_MIDSMALL = (0.015, 0.03, 0.045, 0.06, 0.075)
EQ = (0.2,) * 5
CONFIGS = {
    "fine_ssmaller_reg100": dict(lncc_scales=FINE, sigma_fractions=S_SMALLER, regularisation=100.0),
    "fine_smidsmall_lr2": dict(lncc_scales=FINE, sigma_fractions=S_MIDSMALL, learning_rate=2.0),
    "fine_ssmall_eqw_lr2_reg30": dict(lncc_scales=FINE, sigma_fractions=S_SMALL, sigma_weights=EQ, learning_rate=2.0,
                                      regularisation=30.0),
    "fine_ssmall_lr3": dict(lncc_scales=FINE, sigma_fractions=S_SMALL, learning_rate=3.0),
    "fine_smidsmall_lr2_reg30": dict(lncc_scales=FINE, sigma_fractions=S_MIDSMALL, learning_rate=2.0, regularisation=30.0),
}
