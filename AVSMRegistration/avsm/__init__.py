"""AVSM registration engine: physical-space pipeline, optimisation-based affine and vSVF, outputs.

Quick start::

    import avsm
    result = avsm.register("fixed.nii.gz", "moving.nii.gz", method="vsvf-opt")
    result.save("out/")
"""
__version__ = "0.1.0"

from .errors import AVSMError  # noqa: E402
from .pipeline import METHODS, RegistrationResult, register  # noqa: E402

__all__ = ["AVSMError", "METHODS", "RegistrationResult", "register", "__version__"]
