"""Model prices for ``cost_usd``: one table for the daemon and the in-process SDK.

USD per million tokens (input, output), by model-name prefix; the longest prefix wins and an
unknown model costs 0. The daemon's config file can override or extend it (``model_prices:``).
"""

from __future__ import annotations

from collections.abc import Mapping

Prices = Mapping[str, tuple[float, float]]

DEFAULT_MODEL_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


def price_of(model: str | None, prices: Prices) -> tuple[float, float]:
    """(input, output) USD per million tokens for the model's longest matching prefix."""
    if not model:
        return (0.0, 0.0)
    exact = prices.get(model)
    if exact is not None:  # a key equal to the model is its longest matching prefix
        return exact
    best = ""
    for prefix in prices:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return prices[best] if best else (0.0, 0.0)


def cost_usd(model: str | None, prompt_tokens: int, completion_tokens: int, prices: Prices) -> float:
    price_in, price_out = price_of(model, prices)
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000
