"""The project's error types: each message names the file, key or row at fault.

They share a base so entry points can turn any of them into one line, without importing
the heavy modules that raise them.
"""


class SpreadcastError(ValueError):
    """A problem with inputs, settings or artifacts that the user can fix."""


class ConfigError(SpreadcastError):
    """A params.yaml problem; the message names the key at fault."""


class DataError(SpreadcastError):
    """A dataset problem; the message names the file and the column, row or key at fault."""


class SplitError(SpreadcastError):
    """The dates cannot be split as the windows parameters ask."""


class CheckpointError(SpreadcastError):
    """A checkpoint is missing, altered, truncated or incompatible."""


class TrainingError(SpreadcastError):
    """Training could not run as the parameters ask (for example, a worker process failed)."""


class CollapseError(SpreadcastError):
    """A trained model's forecasts have no spread across targets."""


class MetricError(SpreadcastError, ZeroDivisionError):
    """The metric is undefined on these inputs (zero spread, or no labels on a date)."""
