"""Errors the command line reports as one clear line (no traceback), and long lists in messages
shortened the same way everywhere."""

from collections.abc import Sequence


class ReportedError(Exception):
    """Raised for bad input or a stopped run: the message says what and where."""


class UsageError(ValueError, ReportedError):
    """A command-line option or argument that cannot be used."""


def shortened(items: Sequence[str], shown: int, rest: str = "and {} more") -> list[str]:
    """The first ``shown`` items, then ``rest`` with the count of those left out (if any)."""
    left_out = len(items) - shown
    return [*items[:shown], *([rest.format(left_out)] if left_out > 0 else [])]
