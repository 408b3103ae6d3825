"""Scene bridge of the AVSMRegistration Slicer module (no Qt: works with the `slicer-core` package).

    from AVSMRegistrationLib import register_volumes
    nodes = register_volumes(fixedNode, movingNode, method="avsm")

Modules, one job each: `geometry` (RAS/LPS, node <-> SimpleITK), `options` (methods, devices,
run options), `validation` (input checks), `labels` (label maps and segmentations), `engine`
(running `avsm` in-process or in the background), `scene` (all-or-nothing scene changes),
`display` (colours, grid), `hierarchy` (subject hierarchy), `summary`, `outputs` (engine outputs
-> nodes) and `registration` (the whole run).
"""
from .errors import RegistrationCancelled, RegistrationFailed, RegistrationInputError
from .options import DEFAULT_METHOD, DEVICES, METHOD_KEYS, METHODS, OUTPUT_KEYS, RegistrationOptions, method_by_key
from .outputs import RegistrationNodes
from .registration import RegistrationJob, register_volumes
from .validation import check_inputs, input_problem

__all__ = [
    "DEFAULT_METHOD", "DEVICES", "METHODS", "METHOD_KEYS", "OUTPUT_KEYS",
    "RegistrationCancelled", "RegistrationFailed", "RegistrationInputError", "RegistrationJob",
    "RegistrationNodes", "RegistrationOptions", "check_inputs", "input_problem", "method_by_key",
    "register_volumes",
]
