"""The sandbox's typed requests and responses: a Job in, a TestReport out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.snapshot import Snapshot


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAIL = "xfail"


class RunStatus(StrEnum):
    COMPLETED = "completed"  # the test command ran to its end (its exit code says how it went)
    TIMED_OUT = "timed_out"  # killed at the wall-time limit
    PATCH_FAILED = "patch_failed"  # the candidate's diff does not apply to the snapshot
    CRASHED = "crashed"  # the sandbox's own runner died (e.g. the candidate killed it)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one candidate's container; every one is on by default."""

    timeout_s: float = 120.0
    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 256
    output_bytes: int = 1 << 20
    workspace_mb: int = 512
    network: bool = False


@dataclass(frozen=True)
class TestCase:
    nodeid: str
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAIL)


@dataclass
class TestReport:
    status: RunStatus
    exit_code: int | None
    wall_s: float
    output: str = ""
    output_truncated: bool = False
    tests: dict[str, TestCase] = field(default_factory=dict)
    patch_error: str | None = None
    # Test files the patch touches, or that changed on disk while the tests ran.
    changed_test_files: list[str] = field(default_factory=list)
    # Why the candidate is suspect: test edits with their reason, and what its patch adds to
    # non-test code that could game the run (sandbox/tamper.py). Empty for an honest patch.
    tampering: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)  # pytest plugins installed in the image
    # Whether the test command delivered per-test evidence (JUnit XML) at all.
    evidence: bool = False

    @property
    def timed_out(self) -> bool:
        return self.status is RunStatus.TIMED_OUT

    @property
    def passed(self) -> bool:
        return self.status is RunStatus.COMPLETED and self.exit_code == 0

    def failing(self) -> list[TestCase]:
        return [t for t in self.tests.values() if not t.ok]

    def passing_ids(self) -> set[str]:
        return {t.nodeid for t in self.tests.values() if t.ok}

    def to_dict(self) -> dict:
        return {
            "status": self.status.value,
            "exit_code": self.exit_code,
            "wall_s": round(self.wall_s, 3),
            "output": self.output,
            "output_truncated": self.output_truncated,
            "tests": [
                {"nodeid": t.nodeid, "outcome": t.outcome.value, "message": t.message,
                 "seconds": t.seconds}
                for t in self.tests.values()
            ],
            "patch_error": self.patch_error,
            "changed_test_files": self.changed_test_files,
            "tampering": self.tampering,
            "plugins": self.plugins,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TestReport:
        tests = {
            t["nodeid"]: TestCase(t["nodeid"], Outcome(t["outcome"]), t.get("message", ""),
                                  t.get("seconds", 0.0))
            for t in data.get("tests", [])
        }
        return cls(
            status=RunStatus(data["status"]),
            exit_code=data.get("exit_code"),
            wall_s=data.get("wall_s", 0.0),
            output=data.get("output", ""),
            output_truncated=data.get("output_truncated", False),
            tests=tests,
            patch_error=data.get("patch_error"),
            changed_test_files=list(data.get("changed_test_files", [])),
            tampering=list(data.get("tampering", [])),
            plugins=list(data.get("plugins", [])),
            evidence=bool(data.get("evidence", bool(tests))),
        )


@dataclass(frozen=True)
class Job:
    """One evaluation: a snapshot, an optional candidate diff, and how to test it."""

    snapshot: Snapshot
    patch: str = ""
    test_command: str = "python -m pytest -q"
    select: tuple[str, ...] = ()  # pytest node ids to run instead of the whole suite
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict)
    # A differently configured runner for the winner's confirming run (agent/verdict.py).
    second_opinion: bool = False
