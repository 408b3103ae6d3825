"""Scene bridge of the AVSMRegistration Slicer module (no Qt: works with the `slicer-core` package).

    from AVSMRegistrationLib import register_volumes
    nodes = register_volumes(fixedNode, movingNode, preset="fast")

Modules, one job each: `geometry` (RAS/LPS, node <-> SimpleITK), `options` (the panel's presets and
methods, read from `avsm.methods`; devices; run options), `validation` (input checks), `labels` (label
maps and segmentations), `engine` (running `avsm` in-process or in the background), `scene`
(all-or-nothing scene changes), `display` (colours, grid), `hierarchy` (subject hierarchy), `summary`,
`outputs` (engine outputs -> nodes), `registration` (the whole run), `run_state` (the panel's run as a
state machine) and `dependencies` (the torch range and the installed versions).
"""
from .errors import RegistrationCancelled, RegistrationFailed, RegistrationInputError
from .options import (CHOICES, DEFAULT_CHOICE, DEFAULT_SIMILARITY, DEVICES, OPTIONAL_OUTPUT_KEYS, OUTPUT_KEYS,
                      PANEL_BOXES, SIMILARITY_LABELS, Choice, RegistrationOptions, box_state, choice_by_name)
from .outputs import RegistrationNodes
from .registration import RegistrationJob, register_volumes
from .run_state import RunController, RunState
from .validation import check_inputs, input_problem

__all__ = [
    "CHOICES", "Choice", "DEFAULT_CHOICE", "DEFAULT_SIMILARITY", "DEVICES", "OPTIONAL_OUTPUT_KEYS",
    "OUTPUT_KEYS", "PANEL_BOXES",
    "RegistrationCancelled", "RegistrationFailed", "RegistrationInputError", "RegistrationJob",
    "RegistrationNodes", "RegistrationOptions", "RunController", "RunState", "SIMILARITY_LABELS", "check_inputs",
    "box_state", "choice_by_name", "input_problem", "register_volumes",
]
