"""Exceptions for bad input. Each message names the file or argument and says how to fix it.

The experiments' CLI turns any `JaxnetsError` into one line on stderr and a non-zero exit.
"""


class JaxnetsError(Exception):
    """Base class: a user-facing problem (bad data, bad config, bad checkpoint), not a bug.

    `param` names the parameter at fault (e.g. 'checkpoint_dir'), for the CLI to name its flag.
    """

    def __init__(self, message, param=None):
        super().__init__(message)
        self.param = param


class ConfigError(JaxnetsError, ValueError):
    """An invalid hyper-parameter or option (batch size 0, negative lr, unknown dataset...)."""


class DataError(JaxnetsError, ValueError):
    """A data file exists but is wrong: bad magic number, wrong length, mismatched counts."""


class DataUnavailable(JaxnetsError, FileNotFoundError):
    """A dataset could not be found locally nor downloaded; the message lists how to get it."""


class CheckpointError(JaxnetsError, ValueError):
    """A checkpoint is missing, corrupt or does not match the model being restored."""
