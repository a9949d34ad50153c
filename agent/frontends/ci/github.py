"""A small GitHub REST client for `mulligan ci`.

It honours ``GITHUB_API_URL`` (GitHub Enterprise Server answers under ``/api/v3``). Server
errors (5xx) and lost connections are retried by urllib3's ``Retry`` (mounted on the
requests session) with exponential backoff; what is GitHub's own is handled here: its rate
limits (403/429 with ``x-ratelimit-remaining: 0`` and a reset time, ``retry-after``, or a
secondary-limit message), waited out within a cap and retried. Every other failure becomes a
`GitHubError` whose message is one line. The token is only ever sent in the Authorization
header; it never appears in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from agent.errors import MulliganError

DEFAULT_API_URL = "https://api.github.com"
USER_AGENT = "mulligan-ci"


class GitHubError(MulliganError):
    """A GitHub API call failed for good (exit code 2: the configuration needs fixing)."""

    exit_code = 2

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


_HINTS = {
    401: "the token was rejected: check GITHUB_TOKEN",
    403: "the token lacks a permission this needs: give the job `pull-requests: write` and "
         "`contents: write` (pull requests from forks only get a read-only token)",
    404: "not found: check GITHUB_REPOSITORY, the pull request number and GITHUB_API_URL "
         "(a token without access to a private repository also gets 404)",
    422: "GitHub refused the request as invalid",
}


class _Retry(Retry):
    """urllib3's retries, waiting through the client's `sleep` (tests pass a recorder), and
    from the first retry on: backoff * 2**(retry - 1), capped (urllib3 retries the first at
    once)."""

    sleeper: Callable[[float], None] = staticmethod(time.sleep)

    def new(self, **kw: Any) -> _Retry:
        retry = super().new(**kw)
        retry.sleeper = self.sleeper
        return retry

    def get_backoff_time(self) -> float:
        retries = len(self.history)
        if retries == 0:
            return 0.0
        return min(self.backoff_max, self.backoff_factor * 2 ** (retries - 1))

    def sleep(self, response: Any = None) -> None:
        wait = self.get_backoff_time()
        if wait > 0:
            self.sleeper(wait)


class GitHub:
    def __init__(self, token: str | None, repository: str, api_url: str | None = None, *,
                 max_retries: int = 4, backoff_s: float = 1.0, max_wait_s: float = 60.0,
                 timeout_s: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None) -> None:
        if not repository or repository.count("/") != 1 or repository.startswith("/") \
                or repository.endswith("/"):
            raise GitHubError(f"GITHUB_REPOSITORY must be owner/name, not {repository!r}")
        self.repository = repository
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        if not self.api_url.startswith(("http://", "https://")):
            raise GitHubError(f"GITHUB_API_URL must be an http(s) URL, not {self.api_url!r}")
        self._token = token
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.trust_env = True  # proxies from the environment, as a runner may need
        retry = _Retry(total=max_retries, backoff_factor=backoff_s, backoff_max=max_wait_s,
                       status_forcelist=range(500, 600), allowed_methods=None,
                       raise_on_status=False,  # the last answer becomes a GitHubError here
                       respect_retry_after_header=False)  # rate limits are GitHub's: below
        retry.sleeper = sleep
        adapter = HTTPAdapter(max_retries=retry)
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, adapter)

    def __repr__(self) -> str:  # never show the token
        return f"GitHub({self.repository!r}, api_url={self.api_url!r})"

    def close(self) -> None:
        self.session.close()

    # -- transport ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "User-Agent": USER_AGENT,
                   "X-GitHub-Api-Version": "2022-11-28"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        """One API call (``path`` relative to the API root, or a full URL it returned);
        the decoded JSON body, or None for an empty one."""
        data, _ = self._request(method, path, json=json, params=params)
        return data

    def _request(self, method: str, path: str, *, json: Any = None,
                 params: dict[str, Any] | None = None) -> tuple[Any, requests.Response]:
        url = path if path.startswith(("http://", "https://")) else f"{self.api_url}{path}"
        what = f"{method} {path.split('?')[0]}"
        waited = 0
        while True:
            try:  # 5xx and connection failures are retried inside, by urllib3
                resp = self.session.request(method, url, json=json, params=params,
                                            headers=self._headers(), timeout=self.timeout_s)
            except requests.RequestException as exc:
                raise GitHubError(f"GitHub API unreachable at {self.api_url} ({what}): "
                                  f"{type(exc).__name__}") from None
            status = resp.status_code
            if status < 400:
                if status == 204 or not resp.content:
                    return None, resp
                try:
                    return resp.json(), resp
                except ValueError:
                    raise GitHubError(f"GitHub API answered {what} with a body that is not "
                                      "JSON", status) from None
            wait = self._rate_limit_wait(resp)
            if wait is not None and waited < self.max_retries:
                waited += 1
                self.sleep(wait)
                continue
            raise self._error(resp, what, rate_limited=wait is not None)

    def _rate_limit_wait(self, resp: requests.Response) -> float | None:
        """Seconds to wait before retrying a rate-limited answer; None if it is not one."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = resp.headers.get("retry-after")
        if retry_after is not None:
            try:
                return min(self.max_wait_s, max(0.0, float(retry_after)))
            except ValueError:
                return min(self.max_wait_s, self.backoff_s)
        if resp.headers.get("x-ratelimit-remaining") == "0":
            try:
                reset = float(resp.headers.get("x-ratelimit-reset", ""))
                return min(self.max_wait_s, max(0.0, reset - time.time()) + 1.0)
            except ValueError:
                return min(self.max_wait_s, self.backoff_s)
        if resp.status_code == 429:
            return min(self.max_wait_s, self.backoff_s)
        # A secondary rate limit is a 403 whose message says so.
        if "rate limit" in _message(resp).lower():
            return min(self.max_wait_s, 60.0)
        return None

    def _error(self, resp: requests.Response, what: str, *, rate_limited: bool) -> GitHubError:
        status = resp.status_code
        message = _message(resp)
        if rate_limited:
            hint = "rate limited, and still after retrying"
        elif status >= 500:
            hint = f"server error, and still after {self.max_retries} retries"
        else:
            hint = _HINTS.get(status, "request failed")
        detail = f" ({message})" if message else ""
        text = f"GitHub API {what} failed with HTTP {status}: {hint}{detail}"
        return GitHubError(" ".join(text.split())[:500], status)

    def paginate(self, path: str, params: dict[str, Any] | None = None,
                 limit: int = 2000) -> list[Any]:
        """Every item of a list endpoint, following the Link: rel="next" headers."""
        items: list[Any] = []
        url: str | None = path
        query = {"per_page": 100, **(params or {})}
        while url and len(items) < limit:
            data, resp = self._request("GET", url, params=query)
            if not isinstance(data, list):
                raise GitHubError(f"GitHub API GET {path} did not answer a list")
            items.extend(data)
            nxt = resp.links.get("next", {}).get("url")
            url, query = (nxt, None) if nxt else (None, None)
        return items

    # -- endpoints ------------------------------------------------------------------------

    @property
    def _repo(self) -> str:
        owner, name = self.repository.split("/")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def pull(self, number: int) -> dict:
        return self.request("GET", f"{self._repo}/pulls/{number}")

    def pull_files(self, number: int) -> list[dict]:
        return self.paginate(f"{self._repo}/pulls/{number}/files")

    def pulls(self, *, head: str | None = None, base: str | None = None,
              state: str = "open") -> list[dict]:
        params: dict[str, Any] = {"state": state}
        if head:
            params["head"] = head
        if base:
            params["base"] = base
        return self.paginate(f"{self._repo}/pulls", params)

    def create_pull(self, *, title: str, head: str, base: str, body: str,
                    maintainer_can_modify: bool = True) -> dict:
        return self.request("POST", f"{self._repo}/pulls", json={
            "title": title, "head": head, "base": base, "body": body,
            "maintainer_can_modify": maintainer_can_modify})

    def update_pull(self, number: int, **fields: Any) -> dict:
        return self.request("PATCH", f"{self._repo}/pulls/{number}", json=fields)

    def viewer_login(self) -> str | None:
        """The token's own login (GET /user); None for a token that may not ask, as an
        Actions GITHUB_TOKEN or an app installation token (their author is the app's bot)."""
        try:
            data = self.request("GET", "/user")
        except GitHubError as exc:
            if exc.status in (401, 403, 404):
                return None
            raise
        login = data.get("login") if isinstance(data, dict) else None
        return login if isinstance(login, str) and login else None

    def issue_comments(self, number: int) -> list[dict]:
        return self.paginate(f"{self._repo}/issues/{number}/comments")

    def create_comment(self, number: int, body: str) -> dict:
        return self.request("POST", f"{self._repo}/issues/{number}/comments", json={"body": body})

    def update_comment(self, comment_id: int, body: str) -> dict:
        return self.request("PATCH", f"{self._repo}/issues/comments/{comment_id}",
                            json={"body": body})

    def review_comments(self, number: int) -> list[dict]:
        return self.paginate(f"{self._repo}/pulls/{number}/comments")

    def create_review(self, number: int, *, commit_id: str, body: str,
                      comments: list[dict]) -> dict:
        return self.request("POST", f"{self._repo}/pulls/{number}/reviews", json={
            "commit_id": commit_id, "body": body, "event": "COMMENT", "comments": comments})


def _message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    message = str(data.get("message") or "")
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        extra = first.get("message") or first.get("code") if isinstance(first, dict) else first
        if extra:
            message = f"{message}: {extra}" if message else str(extra)
    return " ".join(message.split())[:300]
