"""A pytest plugin shipped into the sandbox for localization: which repository lines each
test executes (stdlib only, Python >= 3.8; no coverage.py in the offline image).

It is not imported by Mulligan: its source travels in the job's environment, the test
command writes it to /tmp and loads it with `-p`, and at the end of the session it prints
one line `MULLIGAN-TRACE <base64 zlib json>` on stdout. Only frames of files under the
workspace (outside site-packages) are traced line by line; every other frame is refused at
its first event, so the slowdown stays small. The result steers which functions the model
is shown; it never decides a verdict, so a repository that forges it only misleads itself.
"""

import base64
import json
import os
import sys
import threading
import zlib

import pytest

MARKER = "MULLIGAN-TRACE"
_ROOT = os.path.realpath(os.environ.get("MULLIGAN_TRACE_ROOT", "/workspace")) + os.sep
_files = {}  # co_filename -> file id, or -1 when not traced
_names = []  # file id -> path relative to the root
_current = None  # set of (file id, line) for the running test
_tests = []  # [nodeid, failed, [[file id, line], ...]]
_failed = set()


def _file_id(filename):
    fid = _files.get(filename)
    if fid is None:
        fid = -1
        # "<frozen os>", "<string>": not files; relative names are relative to the cwd
        real = "" if filename[:1] == "<" else os.path.realpath(filename)
        if real.startswith(_ROOT) and "site-packages" not in real:
            fid = len(_names)
            _names.append(real[len(_ROOT):])
        _files[filename] = fid
    return fid


def _local(frame, event, arg):
    if event == "line" and _current is not None:
        _current.add((_file_id(frame.f_code.co_filename), frame.f_lineno))
    return _local


def _global(frame, event, arg):
    if _current is None:
        return None
    fid = _file_id(frame.f_code.co_filename)
    if fid < 0:
        return None
    _current.add((fid, frame.f_code.co_firstlineno))
    return _local


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current
    _current = set()
    threading.settrace(_global)
    sys.settrace(_global)
    try:
        yield
    finally:
        sys.settrace(None)
        threading.settrace(None)
        lines = sorted(_current)
        _current = None
        _tests.append([item.nodeid, item.nodeid in _failed, lines])


def pytest_runtest_logreport(report):
    if report.failed:
        _failed.add(report.nodeid)


def pytest_unconfigure(config):
    for test in _tests:
        test[1] = test[0] in _failed
    data = json.dumps({"files": _names, "tests": _tests}, separators=(",", ":"))
    payload = base64.b64encode(zlib.compress(data.encode(), 6)).decode()
    os.write(1, ("\n%s %s\n" % (MARKER, payload)).encode())
