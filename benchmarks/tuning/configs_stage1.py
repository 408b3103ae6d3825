from avsm.losses import LNCCScale

FINE = [LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1)]
S_SMALL = (0.02, 0.04, 0.06, 0.08, 0.1)
S_MID = (0.03, 0.06, 0.09, 0.12, 0.15)
CONFIGS = {
    "default": {},
    "fine": dict(lncc_scales=FINE),
    "fine_smid": dict(lncc_scales=FINE, sigma_fractions=S_MID),
    "fine_ssmall": dict(lncc_scales=FINE, sigma_fractions=S_SMALL),
    "fine_ssmall_reg3": dict(lncc_scales=FINE, sigma_fractions=S_SMALL, regularisation=3.0),
    "fine_ssmall_lr2": dict(lncc_scales=FINE, sigma_fractions=S_SMALL, learning_rate=2.0),
    "fine_ssmall_map1_ts5": dict(lncc_scales=FINE, sigma_fractions=S_SMALL, map_resolution_factor=1.0, time_steps=5, iterations=40),
}
