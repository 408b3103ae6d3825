from avsm.losses import LNCCScale

FINE = [LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1)]
S_MIDSMALL = (0.015, 0.03, 0.045, 0.06, 0.075)
CONFIGS = {
    "fine_smidsmall_lr2_reg50": dict(lncc_scales=FINE, sigma_fractions=S_MIDSMALL, learning_rate=2.0, regularisation=50.0),
}
