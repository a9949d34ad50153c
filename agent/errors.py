"""Errors of the agent core. Each message is one plain line a user can act on."""


class MulliganError(Exception):
    """Base class; the CLI prints str(error) on one line and exits with `exit_code`."""

    exit_code = 2


class ConfigError(MulliganError):
    pass


class WorkspaceError(MulliganError):
    pass


class ModelError(MulliganError):
    """The model endpoint failed in a way retries did not cure."""


class ModelUnavailable(ModelError):
    pass


class ModelNotFound(ModelError):
    pass


class FormatError(MulliganError):
    """A model answer could not be parsed into edits; the message is feedback for the model."""


class EditApplyError(MulliganError):
    """Parsed edits did not match the files; the message is feedback for the model."""
