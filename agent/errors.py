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


__all__ = ["ConfigError", "DiskFull", "DockerUnavailable", "EditApplyError", "FormatError",
           "ImageBuildFailed", "ImageMissing", "ModelError", "ModelNotFound", "ModelUnavailable",
           "MulliganError", "SandboxError", "SnapshotError", "WorkspaceError"]
