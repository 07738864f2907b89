"""A marker base for errors the command line reports as one clear line (no traceback)."""


class ReportedError(Exception):
    """Raised for bad input or a stopped run: the message says what and where."""


class UsageError(ValueError, ReportedError):
    """A command-line option or argument that cannot be used."""
