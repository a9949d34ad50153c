"""A fake GitHub REST API for the `mulligan ci` tests.

Real HTTP on 127.0.0.1 (an ephemeral port) from a ThreadingHTTPServer in a background
thread (the shared server of tests/support/http_server.py), so the code under test talks to
it exactly as to api.github.com or a GitHub Enterprise Server (pass ``prefix="/api/v3"``).
Every request is recorded in ``requests``.

Endpoints (under ``/repos/{owner}/{name}``):

* ``GET pulls/{n}``, ``PATCH pulls/{n}``, ``GET pulls/{n}/files``
* ``GET pulls`` (``head=owner:branch``, ``base``, ``state`` filters), ``POST pulls``
* ``GET|POST issues/{n}/comments``, ``PATCH issues/comments/{id}``
* ``GET|POST pulls/{n}/comments``, ``POST pulls/{n}/reviews`` (a review comment must be
  on a line of the pull request's diff, else 422, as on GitHub)

List endpoints paginate (``per_page``, ``page``, a ``Link: rel="next"`` header; the fake
caps pages at ``page_size``). Misbehaviour: ``fail(status, times=1, ...)`` queues error
answers (``times=None``: for ever), with rate-limit headers for ``rate_limited(...)``;
``token`` (when set) makes a request with another bearer token get a 401
"Bad credentials".
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.http_server import Answer, Handler, Request, ThreadedServer, json_answer

__all__ = ["Failure", "FakeGitHub", "Recorded"]


@dataclass
class Recorded:
    method: str
    path: str  # without the query and without the prefix
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any


@dataclass
class Failure:
    status: int
    times: int | None = 1  # None: every request from now on
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""
    match: str | None = None  # a regex on "METHOD /path"; None: any request


class _Handler(Handler):
    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class FakeGitHub(ThreadedServer):
    handler_class = _Handler
    content_type = "application/json; charset=utf-8"
    thread_name = "fake-github"

    def __init__(self, repository: str = "octo/calc", *, token: str | None = None,
                 prefix: str = "", page_size: int = 100, bot_login: str = "github-actions[bot]"):
        super().__init__()
        self.repository = repository
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.page_size = page_size
        self.bot_login = bot_login
        self.user_login: str | None = None  # set: GET /user answers it (a personal token)
        self.requests: list[Recorded] = []
        self.failures: deque[Failure] = deque()
        self.pulls: dict[int, dict] = {}
        self.files: dict[int, list[dict]] = {}
        self.comments: list[dict] = []  # issue comments, each with "issue_number"
        self.review_comments: list[dict] = []  # each with "pull_number"
        self.reviews: list[dict] = []
        self._ids = 1000

    # -- lifecycle (start, stop, port: ThreadedServer) ------------------------------------

    @property
    def url(self) -> str:
        """The API root, what GITHUB_API_URL holds."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # -- state ----------------------------------------------------------------------------

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def add_pull(self, number: int, *, head_ref: str, head_sha: str, base_ref: str = "main",
                 base_sha: str = "", head_repo: str | None = None, title: str = "A change",
                 files: list[dict] | None = None) -> dict:
        pull = {
            "number": number, "title": title, "state": "open",
            "html_url": f"https://github.example/{self.repository}/pull/{number}",
            "head": {"ref": head_ref, "sha": head_sha,
                     "repo": {"full_name": head_repo or self.repository}},
            "base": {"ref": base_ref, "sha": base_sha,
                     "repo": {"full_name": self.repository}},
            "user": {"login": "contributor", "type": "User"},
        }
        self.pulls[number] = pull
        self.files[number] = list(files or [])
        return pull

    def add_comment(self, issue_number: int, body: str, *, login: str = "someone",
                    user_type: str = "User") -> dict:
        comment = {"id": self._next_id(), "issue_number": issue_number, "body": body,
                   "user": {"login": login, "type": user_type},
                   "html_url": f"https://github.example/{self.repository}/pull/"
                               f"{issue_number}#issuecomment-{self._ids}"}
        self.comments.append(comment)
        return comment

    def fail(self, status: int, times: int | None = 1, *, headers: dict[str, str] | None = None,
             message: str = "", match: str | None = None) -> None:
        self.failures.append(Failure(status, times, dict(headers or {}), message, match))

    def rate_limited(self, times: int = 1, *, reset_in: float | None = None,
                     retry_after: float | None = None, status: int = 403) -> None:
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-used": "5000"}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        else:
            headers["x-ratelimit-remaining"] = "0"
            headers["x-ratelimit-reset"] = str(int(time.time() + (reset_in or 0)))
        self.fail(status, times, headers=headers, message="API rate limit exceeded")

    # -- queries for tests ----------------------------------------------------------------

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests with this method whose path matches the regex (fullmatch)."""
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    def comments_on(self, issue_number: int) -> list[dict]:
        return [c for c in self.comments if c["issue_number"] == issue_number]

    # -- handling -------------------------------------------------------------------------

    def _respond(self, request: Request, handler: Handler) -> Answer:
        status, payload, headers = self._handle(request.method, request.path, request.headers,
                                                request.body)
        return json_answer(status, payload, headers)

    def _handle(self, method: str, raw_path: str, headers: dict[str, str],
                body: Any) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return 404, {"message": "Not Found"}, {}
            path = path[len(self.prefix):]
        with self._lock:
            self._record(Recorded(method, path, query, headers, body))
            failure = self._take_failure(f"{method} {path}")
        if failure is not None:
            return (failure.status,
                    {"message": failure.message or _REASONS.get(failure.status, "Error"),
                     "documentation_url": "https://docs.github.com/rest"},
                    failure.headers)
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials",
                         "documentation_url": "https://docs.github.com/rest"}, {}
        if path == "/user" and method == "GET":
            # An Actions GITHUB_TOKEN may not read /user; a personal token reads its login.
            if self.user_login is None:
                return 403, {"message": "Resource not accessible by integration"}, {}
            return 200, {"login": self.user_login, "type": "User"}, {}
        prefix = f"/repos/{self.repository}"
        if not path.startswith(prefix + "/"):
            return 404, {"message": "Not Found"}, {}
        rest = path[len(prefix):]
        with self._lock:
            return self._route(method, rest, query, body, raw_path)

    def _take_failure(self, what: str) -> Failure | None:
        for failure in list(self.failures):
            if failure.match is not None and not re.search(failure.match, what):
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
            return failure
        return None

    def _route(self, method: str, rest: str, query: dict[str, str], body: Any,
               raw_path: str) -> tuple[int, Any, dict[str, str]]:
        m = re.fullmatch(r"/pulls/(\d+)", rest)
        if m:
            pull = self.pulls.get(int(m.group(1)))
            if pull is None:
                return 404, {"message": "Not Found"}, {}
            if method == "GET":
                return 200, pull, {}
            if method == "PATCH":
                pull.update({k: v for k, v in (body or {}).items() if k in ("title", "body")})
                return 200, pull, {}
        m = re.fullmatch(r"/pulls/(\d+)/files", rest)
        if m and method == "GET":
            number = int(m.group(1))
            if number not in self.pulls:
                return 404, {"message": "Not Found"}, {}
            return self._page(self.files[number], query, raw_path)
        if rest == "/pulls":
            if method == "GET":
                items = [p for p in self.pulls.values()
                         if query.get("state", "open") in ("all", p["state"])]
                if "head" in query:
                    owner, _, branch = query["head"].partition(":")
                    items = [p for p in items if p["head"]["ref"] == branch
                             and p["head"]["repo"]["full_name"].split("/")[0] == owner]
                if "base" in query:
                    items = [p for p in items if p["base"]["ref"] == query["base"]]
                return self._page(items, query, raw_path)
            if method == "POST":
                return self._create_pull(body or {})
        m = re.fullmatch(r"/issues/(\d+)/comments", rest)
        if m:
            number = int(m.group(1))
            if number not in self.pulls:
                return 404, {"message": "Not Found"}, {}
            if method == "GET":
                return self._page(self.comments_on(number), query, raw_path)
            if method == "POST":
                text = (body or {}).get("body")
                if not isinstance(text, str) or not text:
                    return 422, {"message": "Validation Failed",
                                 "errors": [{"message": "body is missing"}]}, {}
                if len(text) > 65536:
                    return 422, {"message": "Validation Failed",
                                 "errors": [{"message": "body is too long"}]}, {}
                return 201, self.add_comment(number, text, login=self.bot_login,
                                             user_type="Bot"), {}
        m = re.fullmatch(r"/issues/comments/(\d+)", rest)
        if m and method == "PATCH":
            comment = next((c for c in self.comments if c["id"] == int(m.group(1))), None)
            if comment is None:
                return 404, {"message": "Not Found"}, {}
            if comment["user"]["login"] != self.bot_login:
                return 403, {"message": "Resource not accessible by integration"}, {}
            comment["body"] = (body or {}).get("body", comment["body"])
            return 200, comment, {}
        m = re.fullmatch(r"/pulls/(\d+)/comments", rest)
        if m:
            number = int(m.group(1))
            if number not in self.pulls:
                return 404, {"message": "Not Found"}, {}
            if method == "GET":
                return self._page([c for c in self.review_comments
                                   if c["pull_number"] == number], query, raw_path)
            if method == "POST":
                problem = self._check_review_comment(number, body or {})
                if problem:
                    return 422, {"message": "Validation Failed",
                                 "errors": [{"message": problem}]}, {}
                return 201, self._add_review_comment(number, body or {}, None), {}
        m = re.fullmatch(r"/pulls/(\d+)/reviews", rest)
        if m and method == "POST":
            number = int(m.group(1))
            if number not in self.pulls:
                return 404, {"message": "Not Found"}, {}
            comments = (body or {}).get("comments") or []
            for comment in comments:
                problem = self._check_review_comment(number, comment)
                if problem:
                    return 422, {"message": "Unprocessable Entity",
                                 "errors": [problem]}, {}
            review = {"id": self._next_id(), "pull_number": number,
                      "body": (body or {}).get("body", ""),
                      "event": (body or {}).get("event"),
                      "commit_id": (body or {}).get("commit_id"), "state": "COMMENTED"}
            self.reviews.append(review)
            for comment in comments:
                self._add_review_comment(number, comment, review["id"])
            return 200, review, {}
        return 404, {"message": "Not Found"}, {}

    def _create_pull(self, body: dict) -> tuple[int, Any, dict[str, str]]:
        head, base = body.get("head"), body.get("base")
        if not head or not base or not body.get("title"):
            return 422, {"message": "Validation Failed",
                         "errors": [{"message": "head, base and title are required"}]}, {}
        owner, _, branch = head.rpartition(":")
        owner = owner or self.repository.split("/")[0]
        for pull in self.pulls.values():
            if pull["state"] == "open" and pull["head"]["ref"] == branch \
                    and pull["base"]["ref"] == base:
                return 422, {"message": "Validation Failed", "errors": [
                    {"message": f"A pull request already exists for {owner}:{branch}."}]}, {}
        number = max([*self.pulls, 0]) + 1
        pull = self.add_pull(number, head_ref=branch, head_sha="", base_ref=base,
                             head_repo=f"{owner}/{self.repository.split('/')[1]}",
                             title=body["title"])
        pull["body"] = body.get("body", "")
        return 201, pull, {}

    def _check_review_comment(self, number: int, comment: dict) -> str | None:
        path, line = comment.get("path"), comment.get("line")
        if not path or not isinstance(line, int):
            return "path and line are required"
        diff_lines = self._diff_lines(number).get(path)
        if diff_lines is None:
            return f"pull_request_review_thread.path {path} is not part of the diff"
        for n in range(comment.get("start_line") or line, line + 1):
            if n not in diff_lines:
                return "pull_request_review_thread.line must be part of the diff"
        return None

    def _diff_lines(self, number: int) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for item in self.files.get(number, []):
            lines: set[int] = set()
            right = 0
            for text in str(item.get("patch") or "").splitlines():
                m = re.match(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@", text)
                if m:
                    right = int(m.group(1))
                elif text.startswith(("+", " ")) or text == "":
                    lines.add(right)
                    right += 1
            out[item["filename"]] = lines
        return out

    def _add_review_comment(self, number: int, comment: dict, review_id: int | None) -> dict:
        stored = {"id": self._next_id(), "pull_number": number,
                  "pull_request_review_id": review_id, **comment,
                  "user": {"login": self.bot_login, "type": "Bot"}}
        self.review_comments.append(stored)
        return stored

    def _page(self, items: list, query: dict[str, str],
              raw_path: str) -> tuple[int, Any, dict[str, str]]:
        per_page = min(self.page_size, int(query.get("per_page", 30)))
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(items):
            parts = urlsplit(raw_path)
            q = {**query, "page": str(page + 1), "per_page": str(per_page)}
            nxt = f"http://127.0.0.1:{self.port}{parts.path}?" + "&".join(
                f"{k}={v}" for k, v in q.items())
            headers["Link"] = f'<{nxt}>; rel="next"'
        return 200, chunk, headers


_REASONS = {401: "Bad credentials", 403: "Forbidden", 404: "Not Found",
            422: "Validation Failed", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 429: "Too Many Requests"}
