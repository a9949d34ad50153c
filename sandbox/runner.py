"""The program that runs inside a candidate's container (stdlib only, Python >= 3.8).

It reads a JSON header line and a tar of the workspace from stdin, unpacks it into
/workspace, runs the test command with its output capped, and prints one result line
tagged with a per-run nonce, so output printed by the candidate cannot pose as the result.
It is passed to `python3 -I -c`, so it never needs to exist in the image and nothing in the
workspace is on its own import path.

The runner and the candidate are different users. The container starts as root with only
the capabilities this needs (CHOWN, SETUID, SETGID, SETPCAP, KILL, no-new-privileges); the
runner unpacks the workspace, leaves the test files (and the directories above them) owned
by root so that the candidate cannot edit, replace or delete them, then runs the test
command as the sandbox user with every capability dropped, its bounding set included.
pytest writes its JUnit XML into a pipe the runner owns (a /dev/fd path), not a file:
nothing can delete it and write another. When the command ends, the runner kills every
other process in the container before it reads the rest of the evidence, so a daemon left
behind cannot rewrite anything afterwards; the candidate cannot signal, trace or write to
the runner (another uid, non-dumpable), nor reach the container's stdout.
"""

import base64
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tarfile
import time

CAP_LAST = 63
EXIT_DRAIN_S = 0.5
PR_SET_DUMPABLE, PR_CAPBSET_DROP = 4, 24


def read_header(stream):
    line = stream.readline()
    return json.loads(line.decode("utf-8"))


def unpack(stream, dest):
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = os.path.normpath(member.name)
            if name.startswith(("/", "..")) or member.isdev():
                continue
            parent = os.path.realpath(os.path.join(dest, os.path.dirname(name)))
            if parent != os.path.realpath(dest) and not parent.startswith(
                    os.path.realpath(dest) + os.sep):
                continue  # through a symlink the tree itself planted: outside the workspace
            tar.extract(member, dest, set_attrs=False)
            if member.isfile():  # keep the executable bit (./run_tests.sh), nothing else
                os.chmod(os.path.join(dest, name), 0o755 if member.mode & 0o111 else 0o644)


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def protect(root, uid, protected, test_dirs):
    """Hand the workspace to `uid`, except the protected files and the directories above
    them: those stay root's. Such a directory is sticky and world-writable (the candidate
    may add files, not rename or delete root's), or, when it is a test directory, closed."""
    keep_dirs = set()
    for rel in protected:
        parent = os.path.dirname(rel)
        while parent:
            keep_dirs.add(parent)
            parent = os.path.dirname(parent)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in filenames + dirnames:
            rel = (rel_dir + "/" + name) if rel_dir else name
            path = os.path.join(dirpath, name)
            if rel in protected or (rel in keep_dirs and os.path.islink(path)):
                if not os.path.islink(path):  # a symlink stays root's too: not replaceable
                    os.chmod(path, os.stat(path).st_mode & 0o755)
            elif os.path.islink(path):
                os.lchown(path, uid, uid)
            elif rel in keep_dirs:
                closed = name in test_dirs
                os.chmod(path, 0o755 if closed else 0o1777)
            else:
                os.chown(path, uid, uid)
    os.chmod(root, 0o1777)


def demote(uid):
    """The test command's preexec: drop every capability for good, then become `uid`."""
    def run():
        libc = _libc()
        for cap in range(CAP_LAST + 1):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return run


def digest_tests(root, protected, patterns):
    import fnmatch

    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__", ".pytest_cache")]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if rel in protected or any(fnmatch.fnmatch(rel, p) for p in patterns):
                try:
                    with open(os.path.join(dirpath, name), "rb") as fh:
                        found[rel] = hashlib.sha256(fh.read()).hexdigest()
                except OSError:
                    found[rel] = "unreadable"
    return found


def kill_others(as_root, pgid):
    """Kill every process but pid 1 and this one; as root, kill(-1) reaches them all, daemons
    that left the process group included. Repeat until none is left (forks in flight)."""
    me = os.getpid()
    for _ in range(100):
        try:
            if as_root:
                os.kill(-1, signal.SIGKILL)
            else:
                os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
        alive = []
        for pid in others:
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().rsplit(")", 1)[-1].split()[0] != "Z":
                        alive.append(pid)
            except OSError:
                pass
        if not alive or not as_root:
            return
        time.sleep(0.01)


def run(header, as_root):
    cap = int(header["output_bytes"])
    head_cap, tail_cap = cap // 2, cap - cap // 2
    head, tail = bytearray(), bytearray()
    junit, junit_cap, junit_over = bytearray(), int(header["junit_bytes"]), False
    dropped = 0
    env = dict(header["env"])
    pass_fds = ()
    junit_r = None
    if header.get("junit_fd"):
        junit_r, w = os.pipe()
        fd = int(header["junit_fd"])
        if as_root:  # pytest reopens it by /dev/fd path: the pipe must be the sandbox user's
            os.fchown(w, int(header["uid"]), int(header["uid"]))
        os.dup2(w, fd)
        os.close(w)
        pass_fds = (fd,)
    start = time.monotonic()
    proc = subprocess.Popen(
        header["command"], shell=True, cwd=header["workdir"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, pass_fds=pass_fds,
        preexec_fn=demote(int(header["uid"])) if as_root else None,  # noqa: PLW1509 - one thread
    )
    for fd in pass_fds:
        os.close(fd)  # only the test command's processes hold the write end now
    deadline = start + float(header["timeout_s"])
    timed_out = False
    sel = selectors.DefaultSelector()
    out_fd = proc.stdout.fileno()
    for fd in (out_fd, junit_r):
        if fd is not None:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
    open_fds = {out_fd}
    exited_at = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        events = sel.select(timeout=min(remaining, 1.0))
        if proc.poll() is not None:
            # The command is done; what a process it left behind keeps printing is not.
            exited_at = exited_at or time.monotonic()
            if not events or time.monotonic() - exited_at > EXIT_DRAIN_S:
                break
        for key, _ in events:
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if key.fd == junit_r:
                if not chunk:
                    sel.unregister(junit_r)
                elif len(junit) + len(chunk) > junit_cap:
                    junit_over = True
                else:
                    junit += chunk
                continue
            if not chunk:
                open_fds.discard(out_fd)
                sel.unregister(out_fd)
                continue
            # Keep the head and the tail: pytest's summary is at the end.
            if len(head) < head_cap:
                take = chunk[: head_cap - len(head)]
                head += take
                chunk = chunk[len(take):]
            if chunk:
                tail += chunk
                if len(tail) > tail_cap:
                    dropped += len(tail) - tail_cap
                    del tail[: len(tail) - tail_cap]
        if not open_fds and proc.poll() is not None:
            break
    code = proc.poll()  # before kill_others, which would make it -9
    kill_others(as_root, proc.pid)
    exit_code = None if timed_out else (code if code is not None else proc.wait())
    if junit_r is not None:  # every writer is dead (as root): read what is left, up to EOF
        os.set_blocking(junit_r, as_root)
        while True:
            try:
                chunk = os.read(junit_r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            if len(junit) + len(chunk) > junit_cap:
                junit_over = True
                break
            junit += chunk
        os.close(junit_r)
    output = bytes(head)
    if dropped:
        output += b"\n... [%d bytes of output dropped] ...\n" % dropped
    output += bytes(tail)
    return {
        "exit_code": exit_code,
        "timed_out": timed_out,
        "seconds": time.monotonic() - start,
        "output": output.decode("utf-8", "replace"),
        "truncated": bool(dropped),
        "junit": None if junit_r is None or junit_over or not junit
        else bytes(junit).decode("utf-8", "replace"),
    }


def pytest_plugins():
    """The pytest plugins installed in the image (entry points), seen from this isolated
    interpreter: the workspace cannot add to the list."""
    try:
        from importlib import metadata

        eps = metadata.entry_points()
        group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
        return sorted({ep.name for ep in group})
    except Exception:  # noqa: BLE001 - a broken distribution's metadata: the list is advisory
        return ["?"]


def make_undumpable():
    """A non-dumpable process's /proc entries belong to root: the candidate cannot read this
    process's memory (the nonce) or open its file descriptors through /proc."""
    try:
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main():
    make_undumpable()
    stdin = sys.stdin.buffer
    header = read_header(stdin)
    workdir = header["workdir"]
    unpack(stdin, workdir)
    as_root = os.geteuid() == 0
    protected = set(header["protected"])
    if as_root:
        protect(workdir, int(header["uid"]), protected, set(header["test_dirs"]))
    patterns = header["test_patterns"]
    before = digest_tests(workdir, protected, patterns)
    result = run(header, as_root)
    after = digest_tests(workdir, protected, patterns)
    result["tests_changed_at_runtime"] = sorted(
        p for p in set(before) | set(after) if before.get(p) != after.get(p)
    )
    result["plugins"] = pytest_plugins()
    result["isolated"] = as_root
    payload = base64.b64encode(json.dumps(result).encode()).decode()
    sys.stdout.write("\n%s %s\n" % (header["nonce"], payload))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
