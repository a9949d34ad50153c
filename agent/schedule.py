"""How wide the search samples and how many sandboxes run beside the model, decided from what
Mulligan can measure: the server's slots (llama.cpp `/props`, `/slots`) and observed speed.

The policy (docs/search.md), pinned with `--schedule`:

* `narrow` (auto on a llama.cpp server that decodes slowly, i.e. a CPU): the first request is
  one greedy sample, tested as soon as it is complete; only when it does not pass does the
  round go on to the remaining samples, then revisions, one request at a time on the slot
  that has read the prompt. An easy bug costs what one sample costs; on a CPU, N answers side
  by side decode at a fraction of the speed each, and each new slot reads the prompt again.
* `wide` (auto on an API, or a llama.cpp server decoding fast, i.e. batching on a GPU): all
  N samples of a round at once, each tested as soon as it is complete.
* Sandboxes: while a model on this machine generates, at most one sandbox per core the
  model leaves free (at least one), so the tests never starve the model of its cores.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from agent.candidate import Candidate
    from agent.edits.lines import LineTarget

# Decode speed above which a llama.cpp server is treated as batching hardware (a GPU): a
# 1.5B model on two CPU cores decodes at ~10-20 tokens/s, on a GPU at hundreds.
FAST_TOKENS_PER_S = 60.0
PROBE_TIMEOUT_S = 2.0
# An answer that took longer than this to write makes the narrow search ask the line
# question before sampling the same long answer again (measured with the bundled model on
# two cores at 6-8 tokens/s: real-library functions copied back in 60-300 s, one-file
# answers of 150-250 tokens in 20-35 s; a corrected line in ~10-20 s).
LONG_ANSWER_S = 40.0


# A first prompt this long (estimated tokens) takes a CPU server a minute or more to read
# before it writes a token (measured with the bundled model on two cores: ~55 tokens/s of
# prompt processing; real libraries' first prompts of 4.5-8k tokens took 80-150 s, one-file
# tasks' 1-2k tokens 20-35 s); screening the suspect lines' mutants (a second or two each)
# costs less, so on a sequential server they go first.
SLOW_PROMPT_TOKENS = 3000


class Schedule(enum.StrEnum):
    AUTO = "auto"
    NARROW = "narrow"
    WIDE = "wide"


@dataclass(frozen=True)
class ServerInfo:
    llama_cpp: bool  # answers /props: cache_prompt and id_slot are understood
    slots: int | None  # parallel slots it reports (None: unknown, e.g. an API)
    local: bool  # on this machine (127.0.0.1/localhost): shares its cores with the sandboxes

    @property
    def label(self) -> str:
        kind = "llama.cpp" if self.llama_cpp else "OpenAI-compatible"
        where = "local" if self.local else "remote"
        slots = f", {self.slots} slot(s)" if self.slots else ""
        return f"{kind} ({where}{slots})"


def _get_json(url: str) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as resp:
            return json.loads(resp.read(1 << 20))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def probe(base_url: str | None) -> ServerInfo:
    """Ask the server what it is; an API (or anything that does not answer) is `wide`."""
    if not base_url:
        return ServerInfo(False, None, False)
    parts = urlsplit(base_url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    root = f"{parts.scheme}://{parts.netloc}"
    props = _get_json(root + "/props")
    if not isinstance(props, dict) or "total_slots" not in props and \
            "default_generation_settings" not in props:
        return ServerInfo(False, None, local)
    slots = props.get("total_slots")
    if not isinstance(slots, int):
        listed = _get_json(root + "/slots")
        slots = len(listed) if isinstance(listed, list) else None
    return ServerInfo(True, slots, local)


@dataclass
class Speed:
    """Observed speed of the model and of the sandbox, for the width and the time estimate."""

    tokens_per_s: list[float] = field(default_factory=list)
    sample_s: list[float] = field(default_factory=list)  # wall time of one answer
    test_s: list[float] = field(default_factory=list)  # wall time of one candidate's tests
    decode_s: list[float] = field(default_factory=list)  # of sample_s, writing the answer

    def record_sample(self, seconds: float, tokens_per_s: float | None, tokens: int) -> None:
        self.sample_s.append(seconds)
        if tokens_per_s is None and seconds > 0 and tokens:
            tokens_per_s = tokens / seconds
        if tokens_per_s:
            self.tokens_per_s.append(tokens_per_s)
            self.decode_s.append(tokens / tokens_per_s)

    @property
    def decode(self) -> float | None:
        return max(self.tokens_per_s) if self.tokens_per_s else None

    def expected_round_s(self, width: int, parallel: int) -> float | None:
        """Seconds a round of `width` answers should take: answers in waves of `parallel`
        (a CPU shares its cores among parallel answers, so a wave costs about `parallel`
        single answers there), plus the last answer's tests."""
        if not self.sample_s:
            return None
        one = sorted(self.sample_s)[len(self.sample_s) // 2]
        test = sorted(self.test_s)[len(self.test_s) // 2] if self.test_s else 0.0
        return one * max(1, width) + test if parallel <= 1 else \
            one * -(-width // parallel) + test


@dataclass
class Planner:
    """The width of each step of the search and the sandboxes beside the model."""

    schedule: Schedule
    candidates: int
    server: ServerInfo
    speed: Speed = field(default_factory=Speed)
    max_requests: int | None = None  # the user's cap (a shared server)

    def narrow(self) -> bool:
        if self.schedule is not Schedule.AUTO:
            return self.schedule is Schedule.NARROW
        if not self.server.llama_cpp:
            return False  # an API: width is free, latency is per request
        decode = self.speed.decode
        return decode is None or decode < FAST_TOKENS_PER_S

    def first_wave(self) -> int:
        """How many samples the first request of the run asks for."""
        return 1 if self.narrow() and self.candidates > 1 else self.candidates

    def greedy_first(self) -> bool:
        return self.narrow() and self.candidates > 1

    def mutants_first(self, prompt_tokens: int) -> bool:
        """Screen the mutants before the first answer: a sequential (CPU) server would
        spend longer reading this prompt than the sandbox spends on the mutants."""
        return self.sequential() and prompt_tokens >= SLOW_PROMPT_TOKENS

    def long_answers(self) -> bool:
        """The last answer took more than LONG_ANSWER_S to write (a function or file copied
        out on a CPU: 1-2k tokens, minutes): more samples of that question cost more than
        short questions (a corrected line, ~10 s) are worth trying first."""
        return self.narrow() and bool(self.speed.decode_s) and \
            self.speed.decode_s[-1] > LONG_ANSWER_S

    def sequential(self) -> bool:
        """One request at a time, all on one cached slot: a llama.cpp server that decodes
        slowly (a CPU). Parallel answers there share the same cores (measured on 2 cores:
        three streams at ~3 tokens/s each against ~13 for one), and every extra slot reads
        the whole prompt again (~90 s for 4.5k tokens), while the slot that read it answers
        the next sample of the same prompt with nothing to read."""
        return self.narrow() and self.server.llama_cpp

    def parallel(self) -> int:
        """Requests in flight at once: one on a CPU llama.cpp server, else bounded by the
        server's slots when it reports them."""
        if self.sequential():
            return 1
        return max(1, min(self.candidates, self.server.slots or self.candidates,
                          self.max_requests or self.candidates))

    def slot(self, lineage: int) -> int:
        """The server slot a request of `lineage` goes to: all to one when sequential (the
        prompts share their start, which that slot has read), else one per lineage."""
        return 0 if self.sequential() else lineage % max(1, self.server.slots or 1)


    def sandboxes(self, workers: int, cores: int) -> int:
        """Sandboxes at once. Beside a llama.cpp server on this machine, the cores the model
        leaves free: on up to four cores it uses them all, so one sandbox at a time (a test
        run then waits a little; the model never waits for the tests' CPU)."""
        if not (self.server.local and self.server.llama_cpp):
            return workers
        model_cores = cores if cores <= 4 else cores // 2
        return max(1, min(workers, cores - model_cores))

    def describe(self, workers: int) -> str:
        mode = "narrow (one greedy sample first)" if self.narrow() else "wide"
        if self.sequential():
            mode += ", one request at a time on one cached slot"
        return (f"search: {mode}, {self.candidates} sample(s) per round, up to "
                f"{self.parallel()} request(s) and {workers} sandbox(es) at once; "
                f"server {self.server.label}")


class RequestGate:
    """At most `limit()` requests in flight, the limit read at every entry: the width
    follows the speed measured so far (a GPU server is known fast after its first answer)."""

    def __init__(self, limit: Callable[[], int]):
        self._limit = limit
        self._inside = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._inside < self._limit())
            self._inside += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self._inside -= 1
            self._changed.notify_all()


@dataclass
class Ask:
    """One single-sample request of the search, and where its answer applies."""

    id: str
    round: int
    parent: Candidate | None
    messages: list[dict[str, str]]
    base: dict[str, str]
    seed: int | None
    purpose: str = "propose"
    temperature: float | None = None  # None: the settings' temperature
    lineage: int = 0  # the server slot its conversation's prompt is cached in
    fmt: str | None = None  # the edit format asked for; None: the run's
    shown: tuple[str, ...] = ()  # the source files its prompt showed
    lines: tuple[LineTarget, ...] = ()  # a line question's suspect lines (fmt "line")


@dataclass
class Activity:
    """Requests and tests in flight, to measure the model's idle time while tests run."""

    requests: int = 0
    tests: int = 0
    idle_s: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def change(self, requests: int = 0, tests: int = 0) -> None:
        now = time.monotonic()
        if self.requests == 0 and self.tests > 0:
            self.idle_s += now - self.since
        self.requests += requests
        self.tests += tests
        self.since = now
