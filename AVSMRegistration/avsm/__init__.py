"""AVSM registration engine: physical-space pipeline, optimisation-based affine and vSVF, outputs.

Quick start::

    import avsm
    result = avsm.register("fixed.nii.gz", "moving.nii.gz", method="vsvf-opt")
    result.save("out/")

``import avsm`` does not import torch: ``register`` and ``RegistrationResult`` load the pipeline on first use,
so that torch-free code (the Slicer module before PyTorch is installed) can read ``avsm.checkpoints.models_dir()``
and ``METHODS``, the methods and the options each takes (``avsm.methods``).
"""
__version__ = "0.1.0"

from .errors import AVSMError  # noqa: E402

__all__ = ["AVSMError", "METHODS", "RegistrationResult", "register", "__version__"]
_PIPELINE_NAMES = ("RegistrationResult", "register")


def __getattr__(name: str):
    if name == "METHODS":
        from .methods import METHODS

        return METHODS
    if name in _PIPELINE_NAMES:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'avsm' has no attribute '{name}'")
