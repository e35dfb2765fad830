"""The price table, and how a leaf's usage becomes cost line items.

A line item is ``"<model>, <what was billed>"`` (or a plain tool name for storage and sessions), with a quantity
in one unit and an exact Decimal unit price. Token line items map one-to-one onto usage atoms, so the quantity of
``"gpt-4o-mini-2024-07-18, cached input"`` for a day and project equals the usage tokens
(``input_cached_text_tokens + input_cached_audio_tokens + input_cached_image_tokens``) for that day, project and
model. Batch usage is billed at half price under ``"batch ..."`` kinds. Moderations are free and bill nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, TypeAlias

from usageledger.emulator.activity import HOUR, Family

__all__ = [
    "AMOUNT_QUANTUM",
    "QUANTITY_QUANTUM",
    "STORAGE_ENDPOINT",
    "TOKEN_KINDS",
    "Billing",
    "LineItem",
    "billings",
    "line_items",
    "unit_price",
]

_M: Final = Decimal(1_000_000)
AMOUNT_QUANTUM: Final = Decimal("1e-12")
"""Leaf amounts are quantized to this before they are summed, so every sum is exact."""
QUANTITY_QUANTUM: Final = Decimal("1e-9")
GIB: Final = Decimal(1 << 30)

_TokenPrices: TypeAlias = tuple[str, str, str, str, str, str]
"""Per 1M tokens: input, cached input, cache write, audio input, output, audio output."""

_CHAT_TOKEN_PRICES: Final[Mapping[str, _TokenPrices]] = {
    "gpt-4o-mini-2024-07-18": ("0.15", "0.075", "0.1875", "0.15", "0.60", "0.60"),
    "gpt-4o-2024-08-06": ("2.50", "1.25", "3.125", "2.50", "10.00", "10.00"),
    "o3-mini-2025-01-31": ("1.10", "0.55", "1.375", "1.10", "4.40", "4.40"),
    "gpt-4.1-2025-04-14": ("2.00", "0.50", "2.50", "2.00", "8.00", "8.00"),
    "gpt-4.1-mini-2025-04-14": ("0.40", "0.10", "0.50", "0.40", "1.60", "1.60"),
    "gpt-4o-audio-preview-2024-12-17": ("2.50", "1.25", "3.125", "40.00", "10.00", "80.00"),
    "o4-mini-2025-04-16": ("1.10", "0.275", "1.375", "1.10", "4.40", "4.40"),
    "gpt-4.1-nano-2025-04-14": ("0.10", "0.025", "0.125", "0.10", "0.40", "0.40"),
    "gpt-5-2025-08-07": ("1.25", "0.125", "1.5625", "1.25", "10.00", "10.00"),
    "gpt-5-mini-2025-08-07": ("0.25", "0.025", "0.3125", "0.25", "2.00", "2.00"),
}
_EMBEDDING_PRICES: Final[Mapping[str, str]] = {"text-embedding-3-small": "0.02", "text-embedding-3-large": "0.13"}
"""Per 1M input tokens: an embedding model bills its input alone, every kind of input at one price."""
_TOKEN_PRICES: Final[Mapping[str, _TokenPrices]] = {
    **_CHAT_TOKEN_PRICES,
    **{model: (price, price, price, price, "0", "0") for model, price in _EMBEDDING_PRICES.items()},
}
"""Every token-billed model's prices, as :func:`unit_price` looks them up (an embedding model's output is free)."""

TOKEN_KINDS: Final[Mapping[str, tuple[tuple[str, ...], int]]] = {
    "input": (("input_text_tokens", "input_image_tokens"), 0),
    "cached input": (("input_cached_text_tokens", "input_cached_audio_tokens", "input_cached_image_tokens"), 1),
    "cache write": (("input_cache_write_30m_tokens", "input_cache_write_12h_tokens"), 2),
    "audio input": (("input_audio_tokens",), 3),
    "output": (("output_text_tokens", "output_image_tokens"), 4),
    "audio output": (("output_audio_tokens",), 5),
}
"""Chat token line-item kinds: the usage atoms each one bills, and its column in the token price table."""

_IMAGE_PRICES: Final[Mapping[tuple[str, str], str]] = {
    ("gpt-image-1", "1024x1024"): "0.042",
    ("gpt-image-1", "1024x1792"): "0.063",
    ("dall-e-3", "1024x1024"): "0.04",
    ("dall-e-3", "1792x1792"): "0.08",
    ("dall-e-3", "1024x1792"): "0.08",
    ("dall-e-2", "256x256"): "0.016",
    ("dall-e-2", "512x512"): "0.018",
    ("dall-e-2", "1024x1024"): "0.02",
}
_CHARACTER_PRICES: Final[Mapping[str, str]] = {"tts-1": "15", "gpt-4o-mini-tts": "12"}  # per 1M characters
_SECOND_PRICES: Final[Mapping[str, str]] = {"whisper-1": "0.0001", "gpt-4o-transcribe": "0.0001"}
_WEB_SEARCH_PRICES: Final[Mapping[str, str]] = {"low": "0.025", "medium": "0.0275", "high": "0.03"}  # per call
_FILE_SEARCH_PRICE: Final = Decimal("0.0025")  # per call
_SESSION_PRICE: Final = Decimal("0.03")
_STORAGE_PRICE: Final = Decimal("0.004")  # per GiB-hour
STORAGE_ENDPOINT: Final = "vector_stores"
"""The one level (gauge) endpoint that costs bill, by the GiB-hour; another level bills nothing, like any endpoint
:func:`billings` does not know."""
_DEFAULT_TOKEN_PRICE: Final[_TokenPrices] = ("1", "0.5", "1.25", "1", "4", "4")  # replayed models not in the table


@dataclass(frozen=True, slots=True)
class LineItem:
    name: str
    unit: str
    quantity: Decimal
    amount: Decimal


def unit_price(model: str, kind: str) -> Decimal:
    """The price of one token of ``kind`` for a chat or embedding model."""
    column = TOKEN_KINDS[kind][1]
    return Decimal(_TOKEN_PRICES.get(model, _DEFAULT_TOKEN_PRICE)[column]) / _M


def _item(name: str, unit: str, quantity: Decimal, price: Decimal) -> LineItem:
    exponent = quantity.as_tuple().exponent
    q = quantity.quantize(QUANTITY_QUANTUM) if isinstance(exponent, int) and exponent < 0 else quantity
    return LineItem(name, unit, q, (q * price).quantize(AMOUNT_QUANTUM))


@dataclass(frozen=True, slots=True)
class Billing:
    """One line item a leaf can bill: its name and unit, the atoms its quantity sums, and the unit price."""

    name: str
    unit: str
    atoms: tuple[int, ...]
    price: Decimal


def billings(family: Family, dims: Mapping[str, object]) -> list[Billing]:
    """The line items a leaf of ``family`` bills, quantity aside; none for storage (priced by time, see
    :func:`line_items`) and for moderations (free). Depends on the model, batch, size and context level alone."""
    name = family.name
    model = str(dims.get("model"))
    out: list[Billing] = []
    if name in ("completions", "decisions"):
        batch = bool(dims.get("batch"))
        prefix = ("batch " if batch else "") + ("decision " if name == "decisions" else "")
        factor = Decimal("0.5") if batch else Decimal(1)
        for kind, (atoms, _) in TOKEN_KINDS.items():
            price = unit_price(model, kind) * factor
            out.append(Billing(f"{model}, {prefix}{kind}", "tokens", tuple(family.atom(a) for a in atoms), price))
    elif name == "embeddings":
        out.append(Billing(f"{model}, input", "tokens", (family.atom("input_tokens"),), unit_price(model, "input")))
    elif name == "images":
        price = Decimal(_IMAGE_PRICES.get((model, str(dims.get("size"))), "0.04"))
        out.append(Billing(f"{model}, {dims.get('size')} images", "images", (family.atom("images"),), price))
    elif name == "audio_speeches":
        price = Decimal(_CHARACTER_PRICES.get(model, "15")) / _M
        out.append(Billing(f"{model}, characters", "characters", (family.atom("characters"),), price))
    elif name == "audio_transcriptions":
        price = Decimal(_SECOND_PRICES.get(model, "0.0001"))
        out.append(Billing(f"{model}, audio", "duration_seconds", (family.atom("seconds"),), price))
    elif name == "web_search_calls":
        level = str(dims.get("context_level"))
        price = Decimal(_WEB_SEARCH_PRICES.get(level, "0.025"))
        name = f"{model}, web search tool calls ({level} context)"
        out.append(Billing(name, "calls", (family.atom("num_requests"),), price))
    elif name == "file_search_calls":
        out.append(Billing("file search tool calls", "calls", (0,), _FILE_SEARCH_PRICE))
    elif name == "code_interpreter_sessions":
        out.append(Billing("code interpreter sessions", "sessions", (0,), _SESSION_PRICE))
    return out


def line_items(family: Family, dims: Mapping[str, object], vec: tuple[int, ...], seconds: int) -> list[LineItem]:
    """The cost line items of one leaf's usage over an interval of ``seconds`` (used by storage)."""
    if family.name == STORAGE_ENDPOINT:
        gib_hours = Decimal(vec[0]) * Decimal(seconds) / Decimal(HOUR) / GIB
        out = [_item("vector store storage", "gibibyte_hours", gib_hours, _STORAGE_PRICE)]
    else:
        out = [_item(b.name, b.unit, Decimal(sum(vec[i] for i in b.atoms)), b.price) for b in billings(family, dims)]
    return [item for item in out if item.quantity]
