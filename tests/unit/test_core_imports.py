"""The core imports no backend: `agent.loop`, `agent.candidate`, `agent.events` (and the
protocols and the run wiring) load without docker, textual or requests; backends are chosen
at the edges. Checked in a fresh interpreter, where nothing else was imported first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("docker", "textual", "requests")


CORE = ("agent", "agent.loop", "agent.candidate", "agent.events", "agent.protocols",
        "agent.run", "agent.models.replay", "agent.errors")


def imported_after(*modules: str) -> set[str]:
    code = (f"import json, sys; import {', '.join(modules)}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_the_core_imports_no_backend():
    # one interpreter for all of them: none may pull a backend in, so neither may the union
    loaded = imported_after(*CORE)
    assert {"agent", "sandbox", "pydantic"} <= loaded  # the probe did import the core
    assert not loaded & set(BACKENDS), f"the core imports {sorted(loaded & set(BACKENDS))}"


def test_the_probe_sees_a_backend_when_one_is_imported():
    assert "docker" in imported_after("sandbox.docker_backend")
