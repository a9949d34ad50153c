"""Never ask the same question twice: a candidate's semantic key (AST-equal changes are one
change; an answer equal to its base changes nothing), which parents a revision round takes
(ties to the newest and least revised, never one parent twice with the same feedback), and
how the question changes when a round makes no progress."""

from __future__ import annotations

import ast
import enum
import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agent.candidate import Candidate

NO_CHANGE = "the answer changes nothing: it is the same code as before"


@functools.lru_cache(maxsize=32)  # the base files: parsed once, not once per candidate
def _canonical(path: str, text: str) -> str:
    """Python files compare by their AST (layout, comments and quotes do not count)."""
    if path.endswith(".py"):
        try:
            return ast.dump(ast.parse(text), annotate_fields=False, include_attributes=False)
        except (SyntaxError, ValueError, RecursionError):
            pass
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def semantic_key(base: dict[str, str], files: dict[str, str]) -> str | None:
    """A digest of what `files` changes against `base` semantically; None: nothing."""
    digest = hashlib.sha256()
    changed = False
    for path in sorted(set(base) | set(files)):
        before, after = base.get(path), files.get(path)
        if before == after:
            continue
        if before is not None and after is not None and \
                _canonical(path, before) == _canonical(path, after):
            continue
        changed = True
        digest.update(path.encode() + b"\0" + (b"-" if after is None else
                                                _canonical(path, after).encode()) + b"\0")
    return digest.hexdigest() if changed else None


class Variant(enum.StrEnum):
    """Ways to ask again when a round made no progress, tried in this order."""

    LINES = "lines"  # name the suspect lines and ask for one corrected (agent/edits/lines.py)
    SPELL_OUT = "spell_out"  # a fresh proposal with the failing assertion's values spelled out
    FAULTY_LINE = "faulty_line"  # state the faulty line first, then the fix
    OTHER_FORMAT = "other_format"  # the other edit format
    HOTTER = "hotter"  # a higher temperature


@dataclass
class Revisions:
    """What was asked so far, to pick parents and notice a round without progress."""

    asked: set[tuple[str, str]] = field(default_factory=set)  # (parent key, feedback digest)
    times_revised: dict[str, int] = field(default_factory=dict)  # candidate id -> count
    best_so_far: tuple | None = None
    stalled_rounds: int = 0
    rounds_seen: int = 0
    first_stalled: bool = False  # the first round fixed no target, and nothing since did

    def parents(self, pool: Sequence[Candidate], beam: int,
                keys: dict[str, str]) -> list[Candidate]:
        """The best `beam` candidates by rank; ties to the newest, least-revised; one per
        distinct patch (the same patch asks the same question)."""
        order = {c.id: i for i, c in enumerate(pool)}
        ranked = sorted(pool, key=lambda c: (c.rank_key(), -self.times_revised.get(c.id, 0),
                                             order[c.id]), reverse=True)
        chosen, seen = [], set()
        for cand in ranked:
            key = keys.get(cand.id, cand.id)
            if key in seen:
                continue
            seen.add(key)
            chosen.append(cand)
            if len(chosen) == beam:
                break
        return chosen

    def is_new(self, parent_key: str, feedback: str) -> bool:
        return (parent_key, _digest(feedback)) not in self.asked

    def mark(self, parent: Candidate, parent_key: str, feedback: str) -> None:
        self.asked.add((parent_key, _digest(feedback)))
        self.times_revised[parent.id] = self.times_revised.get(parent.id, 0) + 1

    def progress(self, candidates: Sequence[Candidate]) -> bool:
        """Whether the best rank improved since the last call (counts stalled rounds). A first
        round whose usable answers fixed no target counts as stalled, so the next round asks
        the line question beside its revisions (revising such answers alone fixed nothing in
        the measured runs); where there is no line question, the first round is revised
        first, as is one whose answers were all unusable (format feedback)."""
        ranks = [c.rank_key() for c in candidates if c.report is not None]
        best = max(ranks) if ranks else None
        first = not self.rounds_seen
        self.rounds_seen += 1
        improved = best is not None and (self.best_so_far is None
                                         or best[:4] > self.best_so_far[:4])
        if improved:
            self.best_so_far, self.stalled_rounds = best, 0
        if first:
            improved = best is not None and best[2] > 0  # fixed a target
            # answers that were all unusable are revised with format feedback first
            usable = any(c.report is not None or c.changes_nothing for c in candidates)
            self.first_stalled = not improved and usable
            self.stalled_rounds = int(self.first_stalled)
        elif improved:
            self.first_stalled = False
        else:
            self.stalled_rounds += 1
        return improved

    def variant(self, skip: Iterable[Variant] = ()) -> Variant | None:
        """The question to ask after stalled rounds (never one in `skip`, e.g. LINES without
        suspect lines): None while the search makes progress."""
        skip = set(skip)
        stalled = self.stalled_rounds
        if self.first_stalled and Variant.LINES in skip:
            stalled -= 1  # no line question to ask: the first round is revised first
        if stalled <= 0:
            return None
        members = [v for v in Variant if v not in skip]
        return members[(stalled - 1) % len(members)]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
