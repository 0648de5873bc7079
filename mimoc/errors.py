"""Errors a user can act on.

Every problem caused by the user's input (a bad flag, a corrupt model file, an
unsupported op, a nonsense device profile) raises :class:`MimocError` or a
subclass. The CLI turns it into one line on stderr and exit status 2; the
Python API lets it propagate.
"""


class MimocError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""


class UsageError(MimocError, ValueError):
    """A bad argument: unknown name, wrong size, malformed list."""


class ModelFileError(MimocError):
    """A model file that is not a mimoc checkpoint or cannot be read safely."""
