"""Scene bridge of the AVSMRegistration Slicer module (no Qt: works with the `slicer-core` package).

    from AVSMRegistrationLib import register_volumes
    nodes = register_volumes(fixedNode, movingNode, method="avsm")

Modules, one job each: `geometry` (RAS/LPS, node <-> SimpleITK), `options` (methods, devices,
run options), `validation` (input checks), `labels` (label maps and segmentations), `engine`
(running `avsm` in-process or in the background), `scene` (all-or-nothing scene changes),
`display` (colours, grid), `hierarchy` (subject hierarchy), `summary`, `outputs` (engine outputs
-> nodes), `registration` (the whole run), `run_state` (the panel's run as a state machine) and
`dependencies` (the torch range and the installed versions).
"""
from .errors import RegistrationCancelled, RegistrationFailed, RegistrationInputError
from .options import (DEFAULT_METHOD, DEVICES, METHOD_KEYS, METHODS, OPTIONAL_OUTPUT_KEYS, OUTPUT_KEYS,
                      RegistrationOptions, method_by_key)
from .outputs import RegistrationNodes
from .registration import RegistrationJob, register_volumes
from .run_state import RunController, RunState
from .validation import check_inputs, input_problem

__all__ = [
    "DEFAULT_METHOD", "DEVICES", "METHODS", "METHOD_KEYS", "OPTIONAL_OUTPUT_KEYS", "OUTPUT_KEYS",
    "RegistrationCancelled", "RegistrationFailed", "RegistrationInputError", "RegistrationJob",
    "RegistrationNodes", "RegistrationOptions", "RunController", "RunState", "check_inputs", "input_problem", "method_by_key",
    "register_volumes",
]
