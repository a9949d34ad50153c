"""The root of Mulligan's one exception tree, and the sandbox's errors under it.

`MulliganError` is defined here because `sandbox` never imports `agent`; `agent.errors`
re-exports it with the core's errors, so every part of the product raises from one tree and
a front end renders any of them the same way (one line, `exit_code`).
"""


class MulliganError(Exception):
    """Base class; the CLI prints str(error) on one line and exits with `exit_code`."""

    exit_code = 2


class SandboxError(MulliganError):
    """The sandbox cannot run at all (not a candidate's failure): the message is one plain
    line that says how to fix it."""


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
