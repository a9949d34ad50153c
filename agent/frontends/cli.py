"""The `mulligan` command line. Progress goes to stderr; `--json` output alone to stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from agent.config import load_settings
from agent.errors import MulliganError
from agent.events import ResultStatus
from agent.frontends.options import (
    DOCTOR_SETTINGS,
    FIX_SETTINGS,
    SANDBOX,
    add_issue_flags,
    add_setting_flags,
    add_trust_flag,
    add_tui_arguments,
    read_issue,
    setting_values,
)
from agent.frontends.signals import sigterm_as_ctrl_c

err = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None and not (sys.argv[1:] if argv is None else argv) \
            and sys.stdin.isatty() and sys.stdout.isatty():
        args = parser.parse_args(["tui"])  # plain `mulligan` in a terminal opens the TUI
        handler = args.handler
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with sigterm_as_ctrl_c():
            return handler(args)
    except MulliganError as exc:
        err.print(f"[bold red]mulligan: error:[/] {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("mulligan: interrupted")
        if getattr(args, "json", False):
            _json_error(args, KeyboardInterrupt("interrupted"))
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mulligan",
        description="Sample candidate patches, test each in a Docker sandbox, keep what passes.")
    sub = parser.add_subparsers(metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check Docker, the sandbox image, the model, git")
    doctor.add_argument("path", nargs="?", default=".")
    add_setting_flags(doctor, DOCTOR_SETTINGS)
    add_trust_flag(doctor)
    doctor.set_defaults(handler=cmd_doctor)

    fix = sub.add_parser("fix", help="find a patch that makes the failing tests pass")
    fix.add_argument("path", nargs="?", default=".")
    add_issue_flags(fix)
    add_setting_flags(fix, FIX_SETTINGS)
    add_trust_flag(fix)
    fix.add_argument("--apply", action="store_true", help="apply the patch to the working tree")
    fix.add_argument("--patch-out", type=Path, default=None, help="write the patch to FILE")
    fix.add_argument("--resume", default=None, metavar="RUN", help="continue an earlier run")
    fix.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    fix.add_argument("-v", "--verbose", action="store_true")
    fix.set_defaults(handler=cmd_fix)

    replay = sub.add_parser("replay", help="show a run from its trajectory")
    replay.add_argument("run", help="run id or trajectory path")
    replay.set_defaults(handler=cmd_replay)

    runs = sub.add_parser("runs", help="list recent runs")
    runs.set_defaults(handler=cmd_runs)

    sandbox = sub.add_parser("sandbox", help="run a repository's tests in the sandbox")
    ssub = sandbox.add_subparsers(metavar="ACTION")
    run = ssub.add_parser("run", help="test the working tree (optionally with a patch)")
    run.add_argument("path", nargs="?", default=".")
    run.add_argument("--patch", type=Path, help="a unified diff to apply first")
    add_setting_flags(run, SANDBOX)
    add_trust_flag(run)
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.set_defaults(handler=cmd_sandbox_run)
    prune = ssub.add_parser("prune", help="remove containers left by killed runs")
    prune.set_defaults(handler=cmd_sandbox_prune)

    from agent.frontends.hook import add_subparser as add_hook_subparser

    add_hook_subparser(sub)  # mulligan hook install|uninstall|run

    from agent.frontends.ci.bot import add_parser as add_ci_subparser

    add_ci_subparser(sub)  # mulligan ci (the GitHub Actions pull-request bot)

    from agent.models.local import add_parser as add_model_subparser

    add_model_subparser(sub)  # mulligan model setup|status (the offline local model)

    from agent.frontends.trust import add_parser as add_trust_subparser

    add_trust_subparser(sub)  # mulligan trust [PATH] [--list|--remove]

    from agent.frontends.bench.runner import add_parser as add_bench_subparser

    add_bench_subparser(sub)  # mulligan bench (strategies compared on benchmark tasks)

    tui = sub.add_parser("tui", help="the terminal UI (what plain `mulligan` opens)")
    add_tui_arguments(tui)
    tui.set_defaults(handler=cmd_tui)
    return parser


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import main as tui_main

    return tui_main(args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.frontends.doctor import run_checks

    repo = Path(args.path).resolve()
    settings = load_settings(repo, setting_values(args, DOCTOR_SETTINGS))
    all_ok = True
    for check in run_checks(repo, settings):
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        err.print(f"{mark} {check.name}: {check.detail}")
        if not check.ok:
            all_ok = False
            if check.fix:
                err.print(f"     fix: {check.fix}")
    return 0 if all_ok else 1


def cmd_fix(args: argparse.Namespace) -> int:
    from agent.events import EventBus
    from agent.frontends.progress import ConsoleProgress
    from agent.run import Run, RunRequest
    from agent.workspace import apply_to_worktree, find_repo_root

    try:
        repo = find_repo_root(Path(args.path))
        settings = load_settings(repo, setting_values(args, FIX_SETTINGS))
        issue = read_issue(args)
        bus = EventBus()
        bus.subscribe(ConsoleProgress(err, verbose=args.verbose))
        run = Run(RunRequest(repo, settings, issue, args.resume), bus)
        result = asyncio.run(run.execute())
    except MulliganError as exc:
        _json_error(args, exc)  # --json: stdout still holds exactly one JSON object
        raise
    try:
        if result.patch and args.patch_out is not None:
            try:
                args.patch_out.write_text(result.patch)
            except OSError as exc:
                raise MulliganError(f"cannot write {args.patch_out}: {exc.strerror}") from None
            err.print(f"patch written to {args.patch_out}")
        if result.status is ResultStatus.SOLVED and args.apply and result.patch:
            changed = apply_to_worktree(repo, result.patch, run.snapshot_tree or "")
            err.print(f"applied to the working tree: {', '.join(changed)}")
    except MulliganError as exc:
        _json_error(args, exc, result.to_json())  # the result, with why it was not applied
        raise
    if args.json:
        print(json.dumps(result.to_json()))
    elif result.patch:
        label = "patch" if result.status is ResultStatus.SOLVED else "best partial patch (does not pass)"
        err.print(f"[bold]{label}[/] ({result.chosen.id if result.chosen else '-'}):")
        sys.stdout.write(result.patch)
    err.print(f"trajectory: {run.trajectory_path}")
    return 0 if result.status in (ResultStatus.SOLVED, ResultStatus.NOTHING_TO_FIX) else 1


def _json_error(args: argparse.Namespace, exc: Exception, result: dict | None = None) -> None:
    if args.json:
        body = result or {"status": ResultStatus.ERROR.value, "patch": None, "candidates": [], "totals": {}}
        print(json.dumps({**body, "error": str(exc)}))


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.frontends.progress import ConsoleProgress
    from agent.trajectory import read_events, run_path

    progress = ConsoleProgress(err, verbose=True)
    for event in read_events(run_path(args.run)):
        progress(event)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from agent.events import RunFinished, RunStarted
    from agent.trajectory import read_events, runs_dir

    for path in sorted(runs_dir().glob("*/trajectory.jsonl"))[-20:]:
        events = read_events(path)
        started = next((e for e in events if isinstance(e, RunStarted)), None)
        finished = next((e for e in events if isinstance(e, RunFinished)), None)
        status = finished.status if finished else "interrupted"
        print(f"{path.parent.name}  {status:14}  {started.repo if started else '?'}")
    return 0


def cmd_sandbox_run(args: argparse.Namespace) -> int:
    from agent.environment import limits_from, open_sandbox
    from agent.workspace import find_repo_root
    from sandbox.api import Job
    from sandbox.snapshot import Snapshot

    repo = find_repo_root(Path(args.path))
    settings = load_settings(repo, setting_values(args, SANDBOX))
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
    from sandbox.layerbuild import BUILD_LABEL

    client = connect()
    removed = 0
    for label in (LABEL, BUILD_LABEL):  # candidates' containers, dependency builds
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True, v=True)
            removed += 1
    err.print(f"removed {removed} sandbox container(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
