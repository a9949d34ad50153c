"""Per-test outcomes from pytest's JUnit XML (xunit1 family, which records each test's file)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sandbox.api import Outcome, TestCase

MESSAGE_CHARS = 4000


def parse_junit(xml_text: str) -> dict[str, TestCase]:
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return {}
    cases: dict[str, TestCase] = {}
    for case in root.iter("testcase"):
        nodeid = _nodeid(case)
        outcome, message = Outcome.PASSED, ""
        for child in case:
            tag = child.tag
            text = (child.get("message") or "") + ("\n" + child.text if child.text else "")
            if tag == "failure":
                outcome, message = Outcome.FAILED, text
            elif tag == "error":
                outcome, message = Outcome.ERROR, text
            elif tag == "skipped":
                is_xfail = (child.get("type") or "") == "pytest.xfail"
                outcome = Outcome.XFAIL if is_xfail else Outcome.SKIPPED
                message = child.get("message") or ""
            if outcome is not Outcome.PASSED:
                break
        try:
            seconds = float(case.get("time") or 0.0)
        except ValueError:
            seconds = 0.0
        previous = cases.get(nodeid)
        # pytest reports a failing teardown as a second entry for the same test: the worst wins.
        if previous is None or previous.ok:
            cases[nodeid] = TestCase(nodeid, outcome, message.strip()[:MESSAGE_CHARS], seconds)
    return cases


def _nodeid(case: ET.Element) -> str:
    name = case.get("name") or "?"
    classname = case.get("classname") or ""
    file = case.get("file")
    if file:
        module = file[:-3].replace("/", ".") if file.endswith(".py") else file
        if not classname and name == module.replace("/", "."):
            return file  # the module itself failed to collect: a target per file
        if classname and not classname.startswith(module):
            # `file` is where the method is defined: a test inherited from a base class in
            # another module (cachetools' tests/__init__.py). Its node id is the class's
            # module's, which the classname holds: modules before the first CapWords part.
            file, module = _class_module(classname, file) or (file, module)
        rest = classname[len(module):].lstrip(".") if classname.startswith(module) else ""
        parts = [file, *([p for p in rest.split(".") if p]), name]
        return "::".join(parts)
    if classname:
        return f"{classname}::{name}"
    return name


def _class_module(classname: str, file: str) -> tuple[str, str] | None:
    """The file and dotted module of a test class from its JUnit classname
    (`tests.test_fifo.FIFOCacheTest` -> tests/test_fifo.py), None if no part is a class
    name. A module outside any package is named by its file alone: it sits in the
    directory of the file the method came from."""
    parts = classname.split(".")
    first_class = next((i for i, p in enumerate(parts) if p[:1].isupper()), None)
    if not first_class:
        return None
    module = ".".join(parts[:first_class])
    path = module.replace(".", "/") + ".py"
    folder = file.rsplit("/", 1)[0] if "/" in file else ""
    if first_class == 1 and folder and not path.startswith(folder + "/"):
        return f"{folder}/{path}", module
    return path, module
