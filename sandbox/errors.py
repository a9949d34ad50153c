"""Errors a user can meet when the sandbox cannot run at all (not a candidate's failure)."""


class SandboxError(Exception):
    """Base class: the message is one plain line that says how to fix it."""


class DockerUnavailable(SandboxError):
    pass


class ImageMissing(SandboxError):
    pass


class ImageBuildFailed(SandboxError):
    pass


class SnapshotError(SandboxError):
    pass


class DiskFull(SandboxError):
    pass
