"""One exception tree: every product error is a MulliganError, the sandbox's included, and
front ends classify by type (a message's wording never decides what kind of error it is)."""

from __future__ import annotations

import argparse

import pytest

import agent.errors
import sandbox.errors
from agent.errors import MulliganError


@pytest.mark.parametrize("name", agent.errors.__all__)
def test_every_error_is_in_the_one_tree(name):
    cls = getattr(agent.errors, name)
    assert issubclass(cls, MulliganError) and cls.exit_code == 2


def test_the_sandbox_errors_are_the_same_classes_under_the_same_root():
    assert sandbox.errors.MulliganError is MulliganError
    assert agent.errors.SandboxError is sandbox.errors.SandboxError
    for name in ("DockerUnavailable", "ImageMissing", "ImageBuildFailed", "SnapshotError",
                 "DiskFull"):
        cls = getattr(sandbox.errors, name)
        assert getattr(agent.errors, name) is cls and issubclass(cls, MulliganError)


def test_the_command_line_renders_a_sandbox_error_as_one_line_and_exit_2(monkeypatch, capsys):
    from agent.frontends import cli

    def broken(_args):
        raise sandbox.errors.DockerUnavailable("the Docker daemon is not running: start it")

    class Parser:
        def parse_args(self, _argv):
            return argparse.Namespace(handler=broken)

    monkeypatch.setattr(cli, "build_parser", Parser)
    assert cli.main(["fix"]) == 2
    err = capsys.readouterr().err
    line = "mulligan: error: the Docker daemon is not running: start it"
    assert err.strip().splitlines() == [line]
