"""Mulligan's one exception tree: the core's errors, and the sandbox's re-exported under the
same root. Each message is one plain line a user can act on; front ends classify by type."""

from sandbox.errors import (
    DiskFull,
    DockerUnavailable,
    ImageBuildFailed,
    ImageMissing,
    MulliganError,
    SandboxError,
    SnapshotError,
)


class ConfigError(MulliganError):
    """A setting, flag or config file is wrong, or names something that is not there."""


class NoModelEndpoint(ConfigError):
    """Neither an endpoint nor the bundled local model is configured."""


class NoTests(ConfigError):
    """The test command is missing in the sandbox, or it collected no tests."""


class BaselineTimedOut(ConfigError):
    """The unmodified tests ran past the time limit."""


class NoSuchRun(ConfigError):
    """A run id or trajectory path that names no recorded run."""


class WorkspaceError(MulliganError):
    """The repository or working tree cannot be used as asked."""


class NotARepository(WorkspaceError):
    """The path is not inside a git checkout."""


class WorktreeChanged(WorkspaceError):
    """The user's files changed since the snapshot a patch was made against: not applied."""


class ModelError(MulliganError):
    """The model endpoint failed in a way retries did not cure."""


class ModelUnavailable(ModelError):
    pass


class ModelNotFound(ModelError):
    pass


class ModelAuthError(ModelError):
    """The endpoint rejected the API key."""


class FormatError(MulliganError):
    """A model answer could not be parsed into edits; the message is feedback for the model."""


class EditApplyError(MulliganError):
    """Parsed edits did not match the files; the message is feedback for the model."""


__all__ = ["BaselineTimedOut", "ConfigError", "DiskFull", "DockerUnavailable", "EditApplyError",
           "FormatError", "ImageBuildFailed", "ImageMissing", "ModelAuthError", "ModelError",
           "ModelNotFound", "ModelUnavailable", "MulliganError", "NoModelEndpoint", "NoSuchRun",
           "NoTests", "NotARepository", "SandboxError", "SnapshotError", "WorkspaceError",
           "WorktreeChanged"]
