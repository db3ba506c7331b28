"""Exceptions for bad input. Each message names the file or parameter and says how to fix it.

A `JaxnetsError` may carry `param`, the name of the parameter (config field or function
argument) it is about; `str(e)` then reads `param: message`. The library never names
command-line flags: the experiments' CLI maps `param` to its flag (experiments.cli.flag:
batch_size becomes batch-size after two dashes) and prints the error as one line, exit status 2.
"""

from __future__ import annotations


class JaxnetsError(Exception):
    """Base class: a user-facing problem (bad data, bad config, bad checkpoint), not a bug.

    `param` names the parameter at fault (e.g. 'checkpoint_dir'), for the CLI to name its flag.
    """

    def __init__(self, message: str = "", *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return f"{self.param}: {self.message}" if self.param else self.message


class ConfigError(JaxnetsError, ValueError):
    """An invalid hyper-parameter or option (batch size 0, negative lr, unknown dataset...)."""


class DataError(JaxnetsError, ValueError):
    """A data file exists but is wrong: bad magic number, wrong length, mismatched counts."""


class DataUnavailable(JaxnetsError, FileNotFoundError):
    """A dataset could not be found locally nor downloaded; the message lists how to get it."""


class CheckpointError(JaxnetsError, ValueError):
    """A checkpoint is missing, corrupt or does not match the model being restored."""


class JaxnetsWarning(UserWarning):
    """A user-facing warning about a run that goes on (e.g. the loss became NaN): the CLI prints
    it as one line on stderr."""
