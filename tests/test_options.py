"""The one settings-flag table and the front ends built from it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.config import Settings, load_settings
from agent.errors import ConfigError
from agent.frontends.cli import build_parser
from agent.frontends.options import (
    CI_SETTINGS,
    FIX_SETTINGS,
    SETTING_FLAGS,
    TUI_SETTINGS,
    add_tui_arguments,
    bounds,
    read_issue,
    setting_values,
)

FLAGS = {f.field: f for f in SETTING_FLAGS}


def test_every_flag_sets_a_settings_field_once() -> None:
    assert len(FLAGS) == len(SETTING_FLAGS)
    assert set(FLAGS) <= set(Settings.model_fields)
    assert len({f.flag for f in SETTING_FLAGS}) == len(SETTING_FLAGS)
    for group in (FIX_SETTINGS, CI_SETTINGS, TUI_SETTINGS):
        assert set(group) <= set(FLAGS)


@pytest.mark.parametrize(("command", "fields"), [
    (["fix"], FIX_SETTINGS), (["ci"], CI_SETTINGS), (["tui"], TUI_SETTINGS)])
def test_front_ends_parse_the_same_flag_to_the_same_value(tmp_path: Path, command, fields):
    argv = []
    for name in fields:
        flag = FLAGS[name]
        if flag.type is None:
            argv.append(flag.flag)
        elif flag.choices:
            argv += [flag.flag, flag.choices[-1]]
        elif flag.type in (int, float):
            argv += [flag.flag, "3"]
        else:
            argv += [flag.flag, f"value-{name}"]
    args = build_parser().parse_args([*command, *argv, str(tmp_path)])
    values = setting_values(args, fields)
    assert set(values) == set(fields)
    for name, value in values.items():
        flag = FLAGS[name]
        assert value is not None, name
        if flag.type is None:
            assert value is True
        elif flag.choices:
            assert value == flag.choices[-1]
        else:
            assert isinstance(value, flag.type) and value == flag.type(str(value)), name
    unset = build_parser().parse_args([*command, str(tmp_path)])
    assert all(v is None for v in setting_values(unset, fields).values())
    assert load_settings(tmp_path, setting_values(unset, fields), environ={}) == \
        load_settings(tmp_path, {}, environ={})


def test_a_flag_overrides_the_repository_config(tmp_path: Path) -> None:
    (tmp_path / ".mulligan.toml").write_text("candidates = 7\nrounds = 2\n")
    args = build_parser().parse_args(["fix", "--candidates", "3", str(tmp_path)])
    settings = load_settings(tmp_path, setting_values(args, FIX_SETTINGS), environ={})
    assert (settings.candidates, settings.rounds) == (3, 2)


def test_bounds_come_from_settings() -> None:
    assert bounds("candidates") == (1, 64)
    assert bounds("rounds") == (1, 20)
    assert bounds("model") == (None, None)
    with pytest.raises(ConfigError, match="candidates"):
        load_settings(Path("/nonexistent"), {"candidates": bounds("candidates")[1] + 1},
                      environ={})


def test_issue_flags(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_tui_arguments(parser)
    issue = tmp_path / "issue.md"
    issue.write_text("mean() divides by the wrong count\n")
    assert read_issue(parser.parse_args(["--issue-file", str(issue)])) == issue.read_text()
    assert read_issue(parser.parse_args(["--issue", "text"])) == "text"
    assert read_issue(parser.parse_args([])) is None
    with pytest.raises(ConfigError, match="cannot read"):
        read_issue(parser.parse_args(["--issue-file", str(tmp_path / "missing.md")]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--issue", "a", "--issue-file", str(issue)])


def test_tui_with_an_unreadable_issue_file_exits_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "agent.frontends.cli", "tui", "--issue-file",
                           str(tmp_path / "missing.md"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"mulligan: error: cannot read {tmp_path / 'missing.md'}: No such file or directory"]
