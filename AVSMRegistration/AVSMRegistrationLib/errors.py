"""Errors raised by the scene bridge; every message is one line meant for the user."""


class RegistrationInputError(ValueError):
    """The inputs or options cannot be registered (checked before anything is run or created)."""


class RegistrationFailed(RuntimeError):
    """The engine ran and failed; the message is the engine's one-line explanation."""


class RegistrationCancelled(RuntimeError):
    """The user cancelled the run; the scene is left as it was."""
