"""Containers outlive nobody: each is labelled with its owner's pid and boot id, a run removes
those whose owner died (SIGKILL, OOM), and a stopping run hands what it could not remove in
time to a detached remover, so the terminal comes back at once and the cleanup still finishes.

Run as `python -m sandbox.reaper ID...` it is that detached remover.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

OWNER_PID = "mulligan.owner_pid"
OWNER_BOOT = "mulligan.owner_boot"
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This kernel's boot id: a pid means the same process only within one boot."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return ""


def owner_labels() -> dict[str, str]:
    return {OWNER_PID: str(os.getpid()), OWNER_BOOT: boot_id()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def orphaned(labels: dict[str, str], boot: str) -> bool:
    """Owned by a process of this boot that no longer exists. A container of another boot
    (or another host sharing the daemon) is left alone: its owner cannot be checked here."""
    pid = labels.get(OWNER_PID, "")
    if not boot or labels.get(OWNER_BOOT) != boot or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and not _pid_alive(int(pid))


def reap_orphans(client: Any, label: str) -> list[str]:
    """Remove the containers under `label` whose owner died; return their ids."""
    boot = boot_id()
    try:
        found = client.containers.list(all=True, filters={"label": [label, OWNER_PID]})
    except Exception:  # noqa: BLE001 -- reaping is housekeeping: never fail a run for it
        return []
    dead = [c.id for c in found if orphaned(c.labels or {}, boot)]
    remove_all(client, dead, deadline_s=None)
    return dead


def remove_all(client: Any, ids: Sequence[str], deadline_s: float | None) -> list[str]:
    """Force-remove containers in parallel; return the ids not removed within the deadline."""
    if not ids:
        return []
    pool = ThreadPoolExecutor(max_workers=min(8, len(ids)), thread_name_prefix="mulligan-rm")
    futures = {pool.submit(_remove, client, cid): cid for cid in ids}
    done, pending = wait(futures, timeout=deadline_s)
    pool.shutdown(wait=False, cancel_futures=True)
    return [futures[f] for f in pending] + [futures[f] for f in done if f.result() is False]


def _remove(client: Any, cid: str) -> bool:
    import docker.errors

    try:
        client.api.remove_container(cid, force=True, v=True)
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError as exc:
        return "already in progress" in str(exc)
    except Exception:  # noqa: BLE001 -- the daemon went away: the next run reaps it
        return False
    return True


def remove_detached(ids: Iterable[str]) -> None:
    """Remove these containers from a process of its own that outlives this one."""
    ids = list(ids)
    if not ids:
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    try:
        subprocess.Popen([sys.executable, "-m", "sandbox.reaper", *ids],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    except OSError:
        pass  # the next run reaps them (their owner will be dead by then)


def main(argv: list[str]) -> int:
    from sandbox.docker_backend import connect

    left = remove_all(connect(), argv, deadline_s=120)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
