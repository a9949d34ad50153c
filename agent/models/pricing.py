"""Prices and usage: what a request costs, and how its usage is split over its choices.

A request's prompt tokens are split evenly over the choices it returned and its completion
tokens in proportion to each choice's text length (both with integer shares that add up
exactly to the request's totals), so summing ``Completion.usage`` over all candidates gives
exactly what was billed. Cost comes from a price table (:data:`DEFAULT_PRICES`, merged with
``ModelSettings.prices``); unknown and local models cost 0.0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from agent.protocols import Usage

__all__ = ["DEFAULT_PRICES", "cost_usd", "price_for", "split_usage"]

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # model: (USD per 1M input tokens, USD per 1M output tokens), OpenAI list prices
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}

_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")


def price_for(
    model: str, prices: dict[str, tuple[float, float]] | None = None
) -> tuple[float, float] | None:
    """The (input, output) USD per 1M tokens for ``model``, or None when unknown.

    Dated snapshots ("gpt-4o-2024-08-06") are priced as their family ("gpt-4o").
    """
    table = DEFAULT_PRICES if prices is None else prices
    if model in table:
        return table[model]
    base = _SNAPSHOT_SUFFIX.sub("", model)
    return table.get(base)


def cost_usd(
    model: str, usage: Usage, prices: dict[str, tuple[float, float]] | None = None
) -> float:
    price = price_for(model, prices)
    if price is None:
        return 0.0
    return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000


def _shares(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` into integer shares proportional to ``weights`` (largest remainder)."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    wsum = sum(weights)
    exact = [total * w / wsum for w in weights]
    shares = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def split_usage(usage: Usage, texts: Sequence[str]) -> list[Usage]:
    """Split one request's usage over its choices.

    Prompt tokens are split evenly (the prompt was read once for all of them), completion
    tokens in proportion to each text's length; the shares add up exactly to ``usage``.
    """
    prompt = _shares(usage.prompt_tokens, [1] * len(texts))
    completion = _shares(usage.completion_tokens, [len(t) for t in texts])
    return [Usage(p, c) for p, c in zip(prompt, completion)]
