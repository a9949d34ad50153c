"""sandbox/requirements.py: which requirement files the layer installs, includes, failures."""

from __future__ import annotations

from sandbox.requirements import choose_roots, explain_failure, plan, pyproject_extras


def plan_of(files: dict[str, str]):
    return plan(files, lambda p: files[p].encode() if p in files else None)


def test_test_requirements_are_preferred_over_dev_docs_and_typing():
    paths = ["requirements/dev.txt", "requirements/docs.txt", "requirements/tests.txt",
             "requirements/typing.txt", "requirements/build.txt", "src/x.py"]
    assert choose_roots(paths) == ["requirements/tests.txt"]
    assert choose_roots(["requirements.txt", "test-requirements.txt", "requirements-dev.txt"]) \
        == ["requirements.txt", "test-requirements.txt"]
    assert choose_roots(["requirements.txt", "requirements-docs.txt"]) == ["requirements.txt"]
    assert choose_roots(["requirements/dev.txt", "requirements/docs.txt"]) == []


def test_includes_are_followed_relative_to_the_including_file_and_copied():
    files = {
        "requirements/tests.txt": "-r base.txt\n-c ../constraints/pins.txt\npytest\n",
        "requirements/base.txt": "--requirement=../docs/requirements.txt\nsix\n",
        "docs/requirements.txt": "sphinx\n",
        "constraints/pins.txt": "six==1.16\n",
    }
    result = plan_of(files)
    assert result.roots == ("requirements/tests.txt",)
    assert set(result.files) == set(files)
    assert result.files["requirements/tests.txt"] == files["requirements/tests.txt"].encode()
    assert result.notes == ()


def test_missing_or_escaping_includes_are_cut_with_a_note_and_local_lines_dropped():
    files = {"requirements-test.txt": "-r ../../outside.txt\n-r gone.txt\n-e .[test]\npytest\n"}
    result = plan_of(files)
    assert result.files["requirements-test.txt"] == b"pytest\n"
    assert len(result.notes) == 2 and all("not in the repository" in n for n in result.notes)


def test_pyproject_extras_prefer_test_extras():
    assert pyproject_extras({"test": ["pytest"], "dev": ["ruff"]}) == ["pytest"]
    assert pyproject_extras({"dev": ["ruff"], "docs": ["sphinx"]}) == ["ruff"]
    assert pyproject_extras({"docs": ["sphinx"]}) == []


def test_explain_failure_names_the_file_and_the_pip_error():
    log = [
        "Step 3/6 : COPY deps/ /opt/mulligan/deps/\n",
        'Step 4/6 : RUN cd /opt/mulligan/deps && python3 -m pip install -r "requirements/tests.txt"\n',
        "ERROR: Could not find a version that satisfies the requirement nosuchpkg==9 (from -r x)\n",
        "ERROR: No matching distribution found for nosuchpkg==9\n",
    ]
    failure = explain_failure(log)
    assert failure.requirement_file == "requirements/tests.txt"
    assert "nosuchpkg==9" in str(failure) and "requirements/tests.txt" in str(failure)
