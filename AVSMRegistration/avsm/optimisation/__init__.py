"""Optimisation-based registration (AVSM paper §3 baselines) and per-pair instance optimisation."""
from .affine_opt import AffineParameters, optimise_affine, refine_affines
from .masks import SimilarityMasks, field_of_view
from .vsvf_opt import (INSTANCE_OPT_SETTINGS, VSVF_OPT_SETTINGS, PriorDeformation, VSVFResult, VSVFSettings,
                       optimise_vsvf, vsvf_maps)

__all__ = ["AffineParameters", "optimise_affine", "refine_affines", "VSVFSettings", "VSVFResult", "optimise_vsvf",
           "vsvf_maps", "PriorDeformation", "INSTANCE_OPT_SETTINGS", "VSVF_OPT_SETTINGS", "SimilarityMasks",
           "field_of_view"]
