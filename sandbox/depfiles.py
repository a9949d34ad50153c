"""Which files decide a repository's dependency layer, and whether a patch changed them: a
candidate that edits them would be tested against a layer built from the old ones, so its
result cannot count as verified (docs/security.md). No Docker here: the core imports it."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping

REQUIREMENTS_RE = re.compile(r"^(requirements[^/]*\.txt|requirements/[^/]+\.txt)$")
TEST_EXTRAS = ("test", "tests", "testing", "dev")


def pyproject_requirements(text: str | bytes | None) -> tuple[str, ...]:
    """`[project] dependencies` and the test extras, as the layer installs them."""
    if text is None:
        return ()
    try:
        data = tomllib.loads(text.decode() if isinstance(text, bytes) else text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ()
    project = data.get("project", {}) if isinstance(data.get("project"), dict) else {}
    out = list(project.get("dependencies", []) or [])
    extras = project.get("optional-dependencies", {}) or {}
    for name in TEST_EXTRAS:
        out.extend(extras.get(name, []) or [])
    return tuple(str(r) for r in out)


def changed_dependency_files(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The dependency files `after` changes against `before` (path -> text): requirement
    files, and pyproject.toml when its dependency lists differ."""
    changed = sorted(p for p in before.keys() | after.keys()
                     if REQUIREMENTS_RE.match(p) and before.get(p) != after.get(p))
    if before.get("pyproject.toml") != after.get("pyproject.toml") and \
            pyproject_requirements(before.get("pyproject.toml")) != \
            pyproject_requirements(after.get("pyproject.toml")):
        changed.append("pyproject.toml")
    return changed
