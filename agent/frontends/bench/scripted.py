"""The scripted model of `mulligan bench --scripted-p P`: measurement without a real model.

THIS IS NOT A MODEL. An in-process OpenAI-compatible HTTP server on 127.0.0.1 answers each
sampled choice with the task's reference fix (as SEARCH/REPLACE blocks built from the fix's
hunks) with probability P, and otherwise with a wrong but well-formed edit (an operator or a
constant mutated near the bug). The loop talks to it through the real `openai` client, so
everything else (sandbox, parsing, applying, selection, revision, token accounting) is real.
Figures obtained with it measure the machinery and how strategies convert per-sample
accuracy into solved tasks; they say nothing about any real model. Every report says so.

This module is the only place in the product that reads a reference fix
(`_fixes/TASKID.patch` next to the task directories, or `--fixes DIR`). The fix is used only
to build the scripted *answers*; it never enters a prompt, and the task's repository as the
agent sees it holds neither the fix nor task.json.

The answer-building approach (SEARCH/REPLACE from the patch hunks, answers conditioned on the
conversation's earlier answers, mutations near the bug) follows bench/loop.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

from agent.edits import apply_edits, parse_answer, unified_diff
from agent.errors import ConfigError, EditApplyError, FormatError
from agent.frontends.bench.tasks import FIXES_DIR, BenchTask
from sandbox import git
from sandbox.diff import parse_patch

LABEL = ("SCRIPTED MODEL (not a real model): each sample is the task's reference fix with "
         "probability p, otherwise a wrong but well-formed edit")
MODEL_PREFIX = "scripted-p"

# Mutations for wrong answers: (pattern, replacement) applied to one line near the bug.
MUTATIONS = [
    (r"(?<![<>=!])<=", "<"), (r"(?<![<>=!-])<(?![<=])", "<="), (r"(?<![<>=!-])>=", ">"),
    (r"(?<![<>=!-])>(?![>=])", ">="), (r"==", "!="), (r"!=", "=="), (r" \+ ", " - "),
    (r" - ", " + "), (r" and ", " or "), (r" or ", " and "), (r"\bTrue\b", "False"),
    (r"\bFalse\b", "True"), (r"\b0\b", "1"), (r"\b1\b", "2"), (r"\b2\b", "3"),
    (r"\[0\]", "[-1]"), (r"\[-1\]", "[0]"), (r"// ", "/ "), (r"\bmin\(", "max("),
    (r"\bmax\(", "min("), (r"\+= 1\b", "+= 2"), (r"-= 1\b", "-= 2"),
]


def blocks_from_diff(diff: str) -> str:
    """SEARCH/REPLACE blocks from a unified diff's hunks (context + removed lines -> context +
    added lines), one block per hunk."""
    parts = []
    for patched in parse_patch(diff) or []:
        for hunk in patched:
            search = "".join(_line(x.value) for x in hunk if x.is_context or x.is_removed)
            replace = "".join(_line(x.value) for x in hunk if x.is_context or x.is_added)
            parts.append(f"{patched.path}\n```python\n<<<<<<< SEARCH\n{search}=======\n"
                         f"{replace}>>>>>>> REPLACE\n```\n")
    return "\n".join(parts)


def _line(value: str) -> str:
    return value if value.endswith("\n") else value + "\n"


@dataclass(frozen=True)
class ScriptedFix:
    """A task's reference fix, prepared for answering (never for prompting)."""

    task_id: str
    files: dict[str, str]  # the buggy text files, as the agent sees them
    fixed: dict[str, str]  # the same with the fix applied
    answer: str  # the fix as SEARCH/REPLACE blocks
    regions: dict[str, list[tuple[int, int]]]  # path -> hunk line ranges (0-based, half-open)

    def matches(self, files: dict[str, str] | None) -> bool:
        """Whether `files` equal the reference fix on every file the fix touches."""
        return files is not None and all(files.get(p) == self.fixed[p] for p in self.regions)


def fix_path(task: BenchTask, fixes_dir: Path | None = None) -> Path:
    if fixes_dir is not None:
        return Path(fixes_dir) / f"{task.id}.patch"
    if task.kind != "dir":
        raise ConfigError(f"task {task.id}: --scripted-p needs --fixes DIR with {task.id}.patch "
                          "for SWE-bench-style tasks")
    origin = Path(task.origin)
    for name in (task.id, origin.name):
        candidate = origin.parent / FIXES_DIR / f"{name}.patch"
        if candidate.is_file():
            return candidate
    return origin.parent / FIXES_DIR / f"{task.id}.patch"


def load_fix(task: BenchTask, fixes_dir: Path | None = None) -> ScriptedFix:
    """Read and check a task's reference fix: its SEARCH/REPLACE form must reproduce
    `git apply` of the patch exactly."""
    path = fix_path(task, fixes_dir)
    try:
        patch = path.read_text(encoding="utf-8")
    except OSError:
        raise ConfigError(f"--scripted-p needs the reference fix of {task.id} at {path} "
                          "(or pass --fixes DIR)") from None
    if task.kind != "dir":
        raise ConfigError(f"task {task.id}: the scripted model supports directory tasks only")
    files = task.text_files()
    answer = blocks_from_diff(patch)
    try:
        fixed = apply_edits(files, parse_answer(answer, files.keys())).files
    except (FormatError, EditApplyError) as exc:
        raise ConfigError(f"{path}: does not apply to task {task.id} ({exc})") from None
    if fixed != _git_apply(files, patch, path):
        raise ConfigError(f"{path}: its SEARCH/REPLACE form does not reproduce `git apply`")
    regions = {p.path: [(h.source_start - 1, h.source_start - 1 + h.source_length) for h in p]
               for p in parse_patch(patch) or []}
    return ScriptedFix(task.id, files, fixed, answer, regions)


def _git_apply(files: dict[str, str], patch: str, where: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="mulligan-fix-") as tmp:
        for rel, text in files.items():
            target = Path(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        proc = git.run(["apply", "--whitespace=nowarn", "-"], input=patch.encode(), cwd=tmp)
        if not proc.ok:
            raise ConfigError(f"{where}: `git apply` fails: "
                              f"{proc.stderr.decode(errors='replace').strip()[:300]}")
        return {rel: Path(tmp, rel).read_text(encoding="utf-8") for rel in files}


class ScriptedResponder:
    """Answers one choice per call; deterministic for a seed whatever the request order."""

    def __init__(self, fix: ScriptedFix, p: float, seed: int, salt: str = "") -> None:
        self.fix = fix
        self.p = p
        self.seed = seed
        self.salt = salt
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        self.fix_answers = 0
        self.wrong_answers = 0

    def __call__(self, messages: list[dict]) -> str:
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        with self.lock:
            k = self.seen.get(digest, 0)
            self.seen[digest] = k + 1
        rng = random.Random(f"{self.seed}|{self.salt}|{self.fix.task_id}|{digest}|{k}")
        current = self._current(messages)
        if rng.random() < self.p and current != self.fix.fixed:
            if current == self.fix.files:
                answer = "The fix:\n\n" + self.fix.answer
            else:
                answer = "The fix:\n\n" + blocks_from_diff(unified_diff(current, self.fix.fixed))
            with self.lock:
                self.fix_answers += 1
            return answer
        with self.lock:
            self.wrong_answers += 1
        return "Try this:\n\n" + self._wrong(current, rng)

    def _current(self, messages: list[dict]) -> dict[str, str]:
        """The files as the conversation left them: each earlier answer applied in turn
        (as the loop applies a child's edits to its parent's files)."""
        files = dict(self.fix.files)
        for message in messages:
            if message.get("role") != "assistant":
                continue
            try:
                files = apply_edits(files, parse_answer(str(message.get("content") or ""),
                                                        files.keys())).files
            except (FormatError, EditApplyError):
                continue
        return files

    def _wrong(self, current: dict[str, str], rng: random.Random) -> str:
        options = []
        for path, ranges in self.fix.regions.items():
            lines = current.get(path, "").splitlines(keepends=True)
            near = {i for lo, hi in ranges for i in range(max(0, lo - 2), min(len(lines), hi + 2))}
            code = [i for i in sorted(near) if lines[i].strip()
                    and not lines[i].lstrip().startswith(("#", '"""', "'''"))]
            for i in code:
                for pattern, repl in MUTATIONS:
                    if re.search(pattern, lines[i]):
                        options.append((path, i, pattern, repl))
            if not options:
                options += [(path, i, None, None) for i in code]
        rng.shuffle(options)
        for path, i, pattern, repl in options:
            lines = current[path].splitlines(keepends=True)
            old = lines[i]
            new = (old.rstrip("\n") + f"  # attempt {rng.randrange(1000)}\n" if pattern is None
                   else re.sub(pattern, repl, old, count=1))
            lines[i] = new
            text = "".join(lines)
            if new != old and text != self.fix.fixed.get(path):
                return blocks_from_diff(unified_diff(current, {**current, path: text}))
        path = next(iter(self.fix.regions))  # nothing to mutate: a harmless comment
        text = current.get(path, "") + f"# attempt {rng.randrange(1000)}\n"
        return blocks_from_diff(unified_diff(current, {**current, path: text}))


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ScriptedServer:
    """A minimal OpenAI-compatible server (POST /v1/chat/completions, GET /v1/models) that
    routes each request by its `model` to a registered responder. Honours `n`; usage is
    estimated at 4 characters per token, the prompt counted once per request (as APIs bill
    a request with n choices)."""

    def __init__(self) -> None:
        self.responders: dict[str, ScriptedResponder] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "the scripted server is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def register(self, model: str, responder: ScriptedResponder) -> None:
        with self._lock:
            self.responders[model] = responder

    def unregister(self, model: str) -> None:
        with self._lock:
            self.responders.pop(model, None)

    def start(self) -> ScriptedServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, obj: object) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    with server._lock:
                        names = sorted(server.responders)
                    self._send(200, {"object": "list", "data": [
                        {"id": n, "object": "model", "owned_by": "mulligan-bench"}
                        for n in names]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "invalid JSON",
                                               "type": "invalid_request_error"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request"}})
                    return
                model = str(body.get("model"))
                with server._lock:
                    responder = server.responders.get(model)
                if responder is None:
                    self._send(404, {"error": {"message": f"The model `{model}` does not exist",
                                               "type": "invalid_request_error",
                                               "code": "model_not_found"}})
                    return
                messages = body.get("messages") or []
                n = max(1, int(body.get("n") or 1))
                texts = [responder(messages) for _ in range(n)]
                prompt = estimate_tokens("".join(str(m.get("content") or "") for m in messages))
                completion = sum(estimate_tokens(t) for t in texts)
                self._send(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion",
                    "created": int(time.time()), "model": model,
                    "choices": [{"index": i, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": t}}
                                for i, t in enumerate(texts)],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion}})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="mulligan-bench-scripted")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
