from avsm.losses import LNCCScale

FINE = [LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1)]
FINE_EQ = [LNCCScale(1 / 16, 0.5, 1), LNCCScale(1 / 8, 0.5, 1)]
S_SMALL = (0.02, 0.04, 0.06, 0.08, 0.1)
S_SMALLER = (0.01, 0.02, 0.03, 0.04, 0.05)
S_3 = (0.02, 0.04, 0.08)
CONFIGS = {
    "fine_ssmaller": dict(lncc_scales=FINE, sigma_fractions=S_SMALLER),
    "fine_ssmall_eqw": dict(lncc_scales=FINE, sigma_fractions=S_SMALL, sigma_weights=(0.2,) * 5),
    "fineeq_ssmall": dict(lncc_scales=FINE_EQ, sigma_fractions=S_SMALL),
    "fine_ssmall_it90": dict(lncc_scales=FINE, sigma_fractions=S_SMALL, iterations=90),
    "fine_ssmaller_map1_ws25": dict(lncc_scales=FINE, sigma_fractions=S_SMALLER, map_resolution_factor=1.0,
                                    working_spacing=2.5, time_steps=6),
}
