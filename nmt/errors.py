"""Errors a user can fix: each carries a one-line message naming the file, line and fix.
The CLI turns them into that line on stderr and exit code 2."""


class NmtError(Exception):
    """Base class: a problem with the user's input, not a bug."""

    exit_code = 2


class DataError(NmtError):
    """A corpus file is missing, empty, misaligned or malformed."""


class ConfigError(NmtError):
    """A configuration value or option is wrong."""


class CheckpointError(NmtError):
    """A checkpoint or model directory is missing, incomplete, corrupted or mismatched."""


class TrainingError(NmtError):
    """Training cannot go on (e.g. the loss became NaN, or a checkpoint could not be written)."""
