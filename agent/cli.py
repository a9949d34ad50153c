"""The `mulligan` command line. Progress goes to stderr; `--json` output alone to stdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from agent.config import load_settings
from agent.errors import MulliganError
from sandbox.errors import SandboxError

err = Console(stderr=True, highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except (MulliganError, SandboxError) as exc:
        err.print(f"[bold red]mulligan: error:[/] {exc}")
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        err.print("mulligan: interrupted")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mulligan",
        description="Sample candidate patches, test each in a Docker sandbox, keep what passes.")
    sub = parser.add_subparsers(metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check Docker, the sandbox image, the model, git")
    doctor.add_argument("path", nargs="?", default=".")
    _model_flags(doctor)
    doctor.add_argument("--image", default=None)
    doctor.set_defaults(handler=cmd_doctor)

    sandbox = sub.add_parser("sandbox", help="run a repository's tests in the sandbox")
    ssub = sandbox.add_subparsers(metavar="ACTION")
    run = ssub.add_parser("run", help="test the working tree (optionally with a patch)")
    run.add_argument("path", nargs="?", default=".")
    run.add_argument("--patch", type=Path, help="a unified diff to apply first")
    _sandbox_flags(run)
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.set_defaults(handler=cmd_sandbox_run)
    prune = ssub.add_parser("prune", help="remove containers left by killed runs")
    prune.set_defaults(handler=cmd_sandbox_prune)
    return parser


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name (MULLIGAN_MODEL)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (OPENAI_BASE_URL)")


def _sandbox_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test-cmd", default=None, help="test command (default: python -m pytest -q)")
    p.add_argument("--image", default=None,
                   help="base image (default: python:3.12-slim, else mulligan/base:bookworm)")
    p.add_argument("--ca-bundle", default=None, type=Path,
                   help="CA bundle for a TLS-intercepting proxy, used when installing deps")
    p.add_argument("--timeout", dest="test_timeout_s", type=float, default=None,
                   help="wall-time limit per test run, seconds")


def _flags(args: argparse.Namespace, *names: str) -> dict:
    return {n: getattr(args, n, None) for n in names}


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.doctor import run_checks

    repo = Path(args.path).resolve()
    settings = load_settings(repo, _flags(args, "model", "base_url", "image"))
    all_ok = True
    for check in run_checks(repo, settings):
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        err.print(f"{mark} {check.name}: {check.detail}")
        if not check.ok:
            all_ok = False
            if check.fix:
                err.print(f"     fix: {check.fix}")
    return 0 if all_ok else 1


def cmd_sandbox_run(args: argparse.Namespace) -> int:
    from agent.environment import find_repo_root, limits_from, open_sandbox
    from sandbox.docker_backend import Job
    from sandbox.snapshot import Snapshot

    repo = find_repo_root(Path(args.path))
    settings = load_settings(repo, _flags(args, "test_cmd", "image", "ca_bundle",
                                          "test_timeout_s"))
    patch = ""
    if args.patch is not None:
        try:
            patch = args.patch.read_text()
        except OSError as exc:
            raise MulliganError(f"cannot read {args.patch}: {exc.strerror}") from None
    with Snapshot.from_directory(repo) as snapshot:
        sandbox = open_sandbox(settings, snapshot, log=lambda line: err.print(f"[dim]{line}[/]"))
        try:
            report = sandbox.run(Job(snapshot, patch, settings.test_cmd, limits=limits_from(settings)))
        finally:
            sandbox.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        err.print(report.output.rstrip()[-3000:])
        failing = report.failing()
        err.print(f"status: {report.status.value}, exit code {report.exit_code}, "
                  f"{len(report.tests)} tests, {len(failing)} failing, {report.wall_s:.1f}s")
        if report.patch_error:
            err.print(f"patch does not apply: {report.patch_error}")
        if report.exit_code == 127:
            err.print(f"the test command was not found in the sandbox: {settings.test_cmd!r}")
    return 0 if report.passed else 1


def cmd_sandbox_prune(args: argparse.Namespace) -> int:
    from sandbox.docker_backend import LABEL, connect

    client = connect()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        container.remove(force=True, v=True)
        removed += 1
    err.print(f"removed {removed} sandbox container(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
