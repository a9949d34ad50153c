"""A pytest plugin shipped into the sandbox for localization: which repository lines each
test executes (stdlib only, Python >= 3.8; no coverage.py in the offline image).

It is not imported by Mulligan: its source travels in the job's environment, the test
command writes it to /tmp and loads it with `-p`, and at the end of the session it prints
one line `MULLIGAN-TRACE <base64 zlib json>` on stdout. Only frames of files under the
workspace (outside site-packages) are traced line by line; every other frame is refused at
its first event, so the slowdown stays small. Code that pytest (or unittest) calls to explain
a failure -- the `__repr__` of an assertion's operands, an exception's `__str__` in the
report -- is not recorded: it runs because the test failed, not why, and would otherwise look
like the likeliest bug (run by failing tests only). The result steers which functions the model
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


# Frames that explain a failure after it happened; a repository frame they call (through
# reprlib, pprint, traceback...) is reporting, not behaviour under test.
_REPORTING_DIRS = tuple(os.sep + os.path.join(*p) + os.sep
                        for p in (("_pytest", "_io"), ("_pytest", "_code")))
_REPORTING_FILES = tuple(os.sep + os.path.join(*p)
                         for p in (("_pytest", "assertion", "util.py"), ("unittest", "util.py")))
# pytest's own checks (raises/warns with match=, approx) read str() and == as the test's
# assertion: what they call is behaviour, even through a reporting helper.
_CHECK_FILES = tuple(os.sep + os.path.join("_pytest", f)
                     for f in ("raises.py", "python_api.py", "recwarn.py"))
_REWRITE = os.sep + os.path.join("_pytest", "assertion", "rewrite.py")
_REWRITE_EXPLAIN = {"_saferepr", "_format_assertmsg", "_call_reprcompare", "_format_explanation",
                    "_format_boolop", "_should_repr_global_name"}


def _explains_failure(code):
    name = code.co_filename
    if name.endswith(_REWRITE):
        return code.co_name in _REWRITE_EXPLAIN
    return any(d in name for d in _REPORTING_DIRS) or name.endswith(_REPORTING_FILES)


def _reporting(frame):
    """Whether a frame was called, through untraced frames only, by failure reporting."""
    explained = False
    back = frame.f_back
    while back is not None:
        if back.f_trace is _local:
            break  # called by traced code: behaviour
        code = back.f_code
        if code.co_filename.endswith(_CHECK_FILES) or code.co_name == "match" and any(
                d in code.co_filename for d in _REPORTING_DIRS):
            return False
        explained = explained or _explains_failure(code)
        back = back.f_back
    return explained


def _local(frame, event, arg):
    if event == "line" and _current is not None:
        _current.add((_file_id(frame.f_code.co_filename), frame.f_lineno))
    return _local


def _global(frame, event, arg):
    if _current is None:
        return None
    fid = _file_id(frame.f_code.co_filename)
    if fid < 0 or _reporting(frame):
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
