"""Names, environment variables, the setup error and the cache paths shared by the local
model's modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.errors import MulliganError

Log = Callable[[str], None]

LOCAL_MODEL_NAME = "local"
"""The model name the local server answers to (``--alias``) and runs record."""

LOCAL_TIMEOUT_S = 600.0
"""Request timeout used with the local server: CPU generation is slow, retries are costly."""

ENV_SERVER = "MULLIGAN_LLAMA_SERVER"
ENV_MODEL = "MULLIGAN_LOCAL_MODEL"
ENV_THREADS = "MULLIGAN_LOCAL_THREADS"
ENV_CTX = "MULLIGAN_LOCAL_CTX"


class SetupError(MulliganError):
    """`mulligan model setup` failed; the message is one line, the exit status 2."""


# -- what to install ------------------------------------------------------------------------

# -- where things live ------------------------------------------------------------------------


def cache_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("mulligan"))


def models_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "models"


def server_path(root: Path | None = None) -> Path:
    return (root or cache_root()) / "bin" / "llama-server"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def logs_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "logs"
