"""User-facing errors: one clear line that names the problem."""


class AVSMError(ValueError):
    """Bad input or configuration; the message is shown to the user as is."""
