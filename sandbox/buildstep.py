"""The program a dependency build runs inside its container (passed with `python3 -c`, so
it depends on nothing but the standard library): forward 127.0.0.1:3128 to the build proxy's
Unix socket, then run each step of the plan as an argument list, no shell.

argv[1] is the plan as JSON: {"socket": path, "cwd": path, "env": {...},
"steps": [[arg, ...], ...], "ensure_pytest": [arg, ...]}. Exit status: the first failing
step's. The container has no network; the socket is its only way out (sandbox/buildproxy.py).
"""

import json
import os
import socket
import subprocess
import sys
import threading

PORT = 3128


def _pipe(src, dst):
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _serve(listener, path):
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(path)
        except OSError:
            client.close()
            continue
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()


def main():
    plan = json.loads(sys.argv[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(64)
    threading.Thread(target=_serve, args=(listener, plan["socket"]), daemon=True).start()
    env = dict(os.environ)
    env.update(plan["env"])
    for step in plan["steps"]:
        print("$ " + " ".join(step), flush=True)
        code = subprocess.call(step, cwd=plan["cwd"], env=env)
        if code != 0:
            return code
    probe = subprocess.call([sys.executable, "-c", "import pytest"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe != 0 and plan.get("ensure_pytest"):
        print("$ " + " ".join(plan["ensure_pytest"]), flush=True)
        return subprocess.call(plan["ensure_pytest"], cwd=plan["cwd"], env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
