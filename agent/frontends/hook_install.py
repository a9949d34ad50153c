"""`mulligan hook install|uninstall`: the pre-commit script, and putting it in place next to
(or instead of) a hook Mulligan did not write."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from agent.frontends.hook_git import HookError, _git_path

HOOK = "pre-commit"
CHAINED = "pre-commit.mulligan-chained"
MARKER = "# mulligan-hook: v1"
CREATED_DIR = "# mulligan-hook: created the hooks folder"


def _is_ours(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as fh:
        return MARKER.encode() in fh.read(4096)


def mulligan_root() -> str:
    """The folder holding the `agent` package of the Mulligan that is running."""
    import agent

    return str(Path(agent.__file__).resolve().parent.parent)


def launcher(python: str, root: str) -> str:
    """The shell words that start this Mulligan's hook with nothing of the working tree on
    its import path: isolated mode (`-I`: no current folder, no PYTHONPATH, no user site)
    and this installation's folder first."""
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "from agent.frontends.hook import main; sys.exit(main(sys.argv[1:]))")
    return f"{shlex.quote(python)} -I -c {shlex.quote(code)}"


def hook_script(python: str, created_dir: bool = False, root: str | None = None,
                console: str | None = None) -> str:
    """The pre-commit script: `python` by absolute path in isolated mode, else the
    `console` script by absolute path (never a name looked up where the hook runs)."""
    py = shlex.quote(python)
    fallback = []
    if console:
        fallback = [f"if [ -x {shlex.quote(console)} ]; then",
                    f'    exec {shlex.quote(console)} hook run "$@"', "fi"]
    return "\n".join([
        "#!/bin/sh",
        MARKER,
        *([CREATED_DIR] if created_dir else []),
        "# Written by `mulligan hook install`: tests what is being committed in Mulligan's",
        "# sandbox and offers a fix when the tests fail. Remove: `mulligan hook uninstall`.",
        "# Skip once: git commit --no-verify, or MULLIGAN_SKIP=1 git commit ...",
        f'chained="$(dirname "$0")/{CHAINED}"',
        'if [ -x "$chained" ]; then',
        '    "$chained" "$@" || exit $?',
        "fi",
        '[ "${MULLIGAN_SKIP:-}" = 1 ] && exit 0',
        f"if [ -x {py} ]; then",
        f'    exec {launcher(python, root or mulligan_root())} run "$@"',
        "fi",
        *fallback,
        (f"echo \"mulligan hook: {python} is gone: run 'mulligan hook install' again, or "
         "commit with --no-verify\" >&2"),
        "exit 1",
        "",
    ])


def _console_script() -> str | None:
    """The absolute path of the `mulligan` console script next to this interpreter."""
    candidate = Path(sys.executable).with_name("mulligan")
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _write_executable(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.mulligan-tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def install(path: str | os.PathLike = ".", *, force: bool = False,
            python: str | None = None) -> str:
    """Write the pre-commit hook; return what was done. A foreign hook is chained with
    `force` and refused without it."""
    cwd = Path(path).absolute()
    hooks = _git_path(cwd, "hooks")
    hook, chained = hooks / HOOK, hooks / CHAINED
    created = False
    if _is_ours(hook):
        created = CREATED_DIR in hook.read_text(errors="replace")
    elif os.path.lexists(hook):
        if not force:
            raise HookError(
                f"{hook} exists and was not written by mulligan: `mulligan hook install "
                "--force` keeps it and runs it first; with the pre-commit framework, add "
                "the `mulligan` hook to .pre-commit-config.yaml instead")
        if os.path.lexists(chained):
            raise HookError(f"{chained} exists already: move it away first")
    if not hooks.is_dir():
        hooks.mkdir(parents=True)
        created = True
    moved = False
    if os.path.lexists(hook) and not _is_ours(hook):
        os.rename(hook, chained)
        moved = True
    try:
        _write_executable(hook, hook_script(python or sys.executable, created,
                                            console=_console_script()))
    except BaseException:
        if moved:
            os.replace(chained, hook)
        raise
    note = f" (runs the previous hook first: {chained.name})" if os.path.lexists(chained) else ""
    return f"installed {hook}{note}"


def uninstall(path: str | os.PathLike = ".") -> str:
    """Remove the hook and put back the one it replaced, byte for byte with its mode."""
    hooks = _git_path(Path(path).absolute(), "hooks")
    hook, chained = hooks / HOOK, hooks / CHAINED
    if os.path.lexists(hook) and not _is_ours(hook):
        raise HookError(f"{hook} was not written by mulligan: left as it is")
    created = _is_ours(hook) and CREATED_DIR in hook.read_text(errors="replace")
    if os.path.lexists(chained):
        os.replace(chained, hook)
        done = f"removed the mulligan hook; {hook} is the previous hook again"
    elif os.path.lexists(hook):
        hook.unlink()
        done = f"removed {hook}"
    else:
        return "no mulligan hook is installed"
    if created:
        try:
            hooks.rmdir()
        except OSError:
            pass  # something else is in it now
    return done

