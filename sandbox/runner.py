"""The program that runs inside a candidate's container (stdlib only, Python >= 3.8).

It reads a JSON header line and a tar of the workspace from stdin, unpacks it into
/workspace, runs the test command with its output capped, and prints one result line
tagged with a per-run nonce, so output printed by the candidate cannot pose as the result.
It is passed to `python3 -c`, so it never needs to exist in the image.
"""

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time


def read_header(stream):
    line = stream.readline()
    return json.loads(line.decode("utf-8"))


def unpack(stream, dest):
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = os.path.normpath(member.name)
            if name.startswith(("/", "..")) or member.isdev():
                continue
            tar.extract(member, dest, set_attrs=False)


def digest_tests(root, patterns):
    import fnmatch

    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__", ".pytest_cache")]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if any(fnmatch.fnmatch(rel, p) for p in patterns):
                try:
                    with open(os.path.join(dirpath, name), "rb") as fh:
                        found[rel] = hashlib.sha256(fh.read()).hexdigest()
                except OSError:
                    found[rel] = "unreadable"
    return found


def run(header):
    cap = int(header["output_bytes"])
    head_cap, tail_cap = cap // 2, cap - cap // 2
    head, tail = bytearray(), bytearray()
    dropped = 0
    env = dict(header["env"])
    start = time.monotonic()
    proc = subprocess.Popen(
        header["command"], shell=True, cwd=header["workdir"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = start + float(header["timeout_s"])
    timed_out = False
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        events = sel.select(timeout=min(remaining, 1.0))
        if not events:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
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
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    exit_code = None if timed_out else proc.wait()
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
    }


def make_undumpable():
    """Candidates run as the same uid: without this they can read this process's memory
    (the nonce) and write to its stdout through /proc, and so forge the result. A
    non-dumpable process's /proc entries belong to root (no CAP_SYS_PTRACE in here)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass


def main():
    make_undumpable()
    stdin = sys.stdin.buffer
    header = read_header(stdin)
    unpack(stdin, header["workdir"])
    patterns = header["test_patterns"]
    before = digest_tests(header["workdir"], patterns)
    result = run(header)
    after = digest_tests(header["workdir"], patterns)
    result["tests_changed_at_runtime"] = sorted(
        p for p in set(before) | set(after) if before.get(p) != after.get(p)
    )
    junit = header.get("junit_path")
    result["junit"] = None
    if junit and os.path.isfile(junit):
        with open(junit, "rb") as fh:
            result["junit"] = fh.read(int(header["junit_bytes"])).decode("utf-8", "replace")
    payload = base64.b64encode(json.dumps(result).encode()).decode()
    sys.stdout.write("\n%s %s\n" % (header["nonce"], payload))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
