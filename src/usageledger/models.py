"""Typed models of the Usage & Costs API: the page, the bucket and one result type per endpoint.

The models are ``msgspec`` structs, decoded straight from the response bytes:

* unknown fields are ignored, so a newer API does not break an older client;
* money and billed quantities are :class:`~decimal.Decimal`, exactly as sent (``0.06`` stays ``Decimal('0.06')``);
* a result whose ``object`` this version does not know is kept as an :class:`OpaqueResult` (with a logged
  warning) rather than failing the page;
* the bucket array is read from ``results``, and from the seed-era name ``result`` too.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeAlias, get_args

import msgspec

from usageledger.errors import ResponseDecodeError

__all__ = [
    "AudioSpeechesResult",
    "AudioTranscriptionsResult",
    "Bucket",
    "CodeInterpreterSessionsResult",
    "CompletionsResult",
    "CostAmount",
    "CostsResult",
    "DecisionsResult",
    "EmbeddingsResult",
    "FileSearchCallsResult",
    "ImagesResult",
    "ModerationsResult",
    "OpaqueResult",
    "Result",
    "UsageResponse",
    "VectorStoresResult",
    "WebSearchCallsResult",
    "decode_page",
]

logger = logging.getLogger("usageledger.models")

Int64: TypeAlias = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""Counts fit a signed 64-bit integer (a store BIGINT); anything larger is refused as a decode error."""
UnixTime: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
"""Unix seconds, within any plausible range."""

ApiSource: TypeAlias = str
"""``agents_api`` or ``unlabeled`` today; kept open so a new value does not fail a page."""


class _ResultBase(msgspec.Struct, tag_field="object", kw_only=True, omit_defaults=True):
    """Common base: results are told apart by their ``object`` field."""


class _PerKeyGroups(_ResultBase, kw_only=True):
    """The groupings of usage that someone's API key makes: project, user, key."""

    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None


class _PerModelGroups(_PerKeyGroups, kw_only=True):
    model: str | None = None


class CompletionsResult(_PerModelGroups, tag="organization.usage.completions.result", kw_only=True):
    input_tokens: Int64
    output_tokens: Int64
    num_model_requests: Int64
    input_cached_tokens: Int64 | None = None
    input_cache_write_tokens: Int64 | None = None
    input_cache_write_30m_tokens: Int64 | None = None
    input_cache_write_12h_tokens: Int64 | None = None
    input_uncached_tokens: Int64 | None = None
    input_text_tokens: Int64 | None = None
    input_audio_tokens: Int64 | None = None
    input_image_tokens: Int64 | None = None
    input_cached_text_tokens: Int64 | None = None
    input_cached_audio_tokens: Int64 | None = None
    input_cached_image_tokens: Int64 | None = None
    output_text_tokens: Int64 | None = None
    output_audio_tokens: Int64 | None = None
    output_image_tokens: Int64 | None = None
    batch: bool | None = None
    service_tier: str | None = None
    api_source: ApiSource | None = None


class DecisionsResult(CompletionsResult, tag="organization.usage.decisions.result", kw_only=True):
    """Same fields and meanings as completions (SDK-only endpoint)."""


class _InputTokenCounts(_PerModelGroups, kw_only=True):
    """Input tokens and requests per model: what embeddings and moderations both count."""

    input_tokens: Int64
    num_model_requests: Int64


class EmbeddingsResult(_InputTokenCounts, tag="organization.usage.embeddings.result", kw_only=True):
    """Embedding requests' input tokens."""


class ModerationsResult(_InputTokenCounts, tag="organization.usage.moderations.result", kw_only=True):
    """Moderation requests' input tokens."""


class ImagesResult(_PerModelGroups, tag="organization.usage.images.result", kw_only=True):
    images: Int64
    num_model_requests: Int64
    source: str | None = None
    size: str | None = None


class AudioSpeechesResult(_PerModelGroups, tag="organization.usage.audio_speeches.result", kw_only=True):
    characters: Int64
    num_model_requests: Int64


class AudioTranscriptionsResult(_PerModelGroups, tag="organization.usage.audio_transcriptions.result", kw_only=True):
    seconds: Int64
    num_model_requests: Int64


class VectorStoresResult(_ResultBase, tag="organization.usage.vector_stores.result", kw_only=True):
    usage_bytes: Int64
    project_id: str | None = None


class CodeInterpreterSessionsResult(
    _ResultBase, tag="organization.usage.code_interpreter_sessions.result", kw_only=True
):
    """``num_sessions``; responses from before 2025-02-10 called it ``sessions``, which is accepted too."""

    num_sessions: Int64 | None = None
    sessions: Int64 | None = None
    project_id: str | None = None

    def __post_init__(self) -> None:
        if self.num_sessions is None:
            if self.sessions is None:
                raise ValueError("code interpreter result has neither `num_sessions` nor `sessions`")
            self.num_sessions = self.sessions
        self.sessions = None


class FileSearchCallsResult(_PerKeyGroups, tag="organization.usage.file_searches.result", kw_only=True):
    num_requests: Int64
    vector_store_id: str | None = None


class WebSearchCallsResult(_PerModelGroups, tag="organization.usage.web_searches.result", kw_only=True):
    num_model_requests: Int64
    num_requests: Int64
    context_level: str | None = None
    api_source: ApiSource | None = None


class CostAmount(msgspec.Struct, kw_only=True, omit_defaults=True):
    value: Decimal | None = None
    currency: str | None = None


class CostsResult(_ResultBase, tag="organization.costs.result", kw_only=True):
    amount: CostAmount | None = None
    line_item: str | None = None
    project_id: str | None = None
    api_key_id: str | None = None
    user_id: str | None = None
    api_source: ApiSource | None = None
    quantity: Decimal | None = None
    quantity_unit: str | None = None

    @property
    def amount_value(self) -> Decimal | None:
        """``amount.value`` as an exact Decimal, in whole currency units."""
        return None if self.amount is None else self.amount.value

    @property
    def currency(self) -> str | None:
        return None if self.amount is None else self.amount.currency


class OpaqueResult(_ResultBase, tag="usageledger.opaque", kw_only=True):
    """A result whose ``object`` this version does not know, kept whole rather than failing its page."""

    object_name: str
    fields: dict[str, Any]


Result: TypeAlias = (
    CompletionsResult
    | DecisionsResult
    | EmbeddingsResult
    | ModerationsResult
    | ImagesResult
    | AudioSpeechesResult
    | AudioTranscriptionsResult
    | VectorStoresResult
    | CodeInterpreterSessionsResult
    | FileSearchCallsResult
    | WebSearchCallsResult
    | CostsResult
    | OpaqueResult
)


class Bucket(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One time bucket: ``[start_time, end_time)`` in Unix seconds, with its aggregated results."""

    start_time: UnixTime
    end_time: UnixTime
    results: list[Result] = msgspec.field(default_factory=list)
    result: list[Result] | None = None
    object: Literal["bucket"] = "bucket"

    def __post_init__(self) -> None:
        # The seed-era spec named the array `result`; the server sends `results`. Accept either.
        if self.result is not None:
            if not self.results:
                self.results = self.result
            self.result = None


class UsageResponse(msgspec.Struct, kw_only=True):
    """One page of buckets: the response of every Usage & Costs endpoint."""

    data: list[Bucket]
    has_more: bool = False
    next_page: str | None = None
    object: Literal["page"] = "page"


# --- decoding -------------------------------------------------------------------------------------------

_DECODER: Final = msgspec.json.Decoder(UsageResponse)
_KNOWN_OBJECTS: Final = frozenset(
    t.__struct_config__.tag
    for t in get_args(Result)
    if t is not OpaqueResult and isinstance(t.__struct_config__.tag, str)
)
"""The ``object`` of every typed result, read from :data:`Result` itself: a model added to the union is known to the
tolerant decoding path too (a second list here once had to be kept in step, or a new endpoint's results turned
opaque whenever its page also held an unknown result)."""
_RESULT_DECODER: Final = msgspec.json.Decoder(Result)


class _LooseBucket(msgspec.Struct, kw_only=True):
    start_time: UnixTime
    end_time: UnixTime
    results: list[msgspec.Raw] | None = None
    result: list[msgspec.Raw] | None = None


class _LoosePage(msgspec.Struct, kw_only=True):
    data: list[_LooseBucket]
    has_more: bool = False
    next_page: str | None = None


class _ObjectOnly(msgspec.Struct):
    object: str | None = None


_LOOSE_DECODER: Final = msgspec.json.Decoder(_LoosePage)
_OBJECT_DECODER: Final = msgspec.json.Decoder(_ObjectOnly)
_ANY_DECODER: Final = msgspec.json.Decoder(dict[str, Any])


def decode_page(content: bytes | bytearray | memoryview | str) -> UsageResponse:
    """Decode one response body into a :class:`UsageResponse`.

    The fast path decodes every result straight into its typed struct. Only when that fails does the slow path
    look at each result on its own, so that an unknown result ``object`` becomes an :class:`OpaqueResult`
    instead of failing the page. Anything else that does not fit raises :class:`ResponseDecodeError`.
    """
    try:
        return _DECODER.decode(content)
    except msgspec.DecodeError as fast_error:
        try:
            return _decode_tolerant(content)
        except msgspec.DecodeError as exc:
            raise ResponseDecodeError(f"the response body is not a valid usage page: {exc}") from fast_error
        except (RecursionError, ValueError) as exc:
            raise ResponseDecodeError(f"the response body is not a valid usage page: {exc}") from fast_error


def _decode_tolerant(content: bytes | bytearray | memoryview | str) -> UsageResponse:
    loose = _LOOSE_DECODER.decode(content)
    buckets = []
    for lb in loose.data:
        raws = lb.results if lb.results else (lb.result or [])
        results: list[Result] = []
        for raw in raws:
            obj = _OBJECT_DECODER.decode(raw).object
            if obj in _KNOWN_OBJECTS:
                results.append(_RESULT_DECODER.decode(raw))
            else:
                logger.warning("kept a result with unknown object %r as OpaqueResult", obj)
                data = _ANY_DECODER.decode(raw)
                data.pop("object", None)
                results.append(OpaqueResult(object_name=str(obj), fields=data))
        buckets.append(Bucket(start_time=lb.start_time, end_time=lb.end_time, results=results))
    return UsageResponse(data=buckets, has_more=loose.has_more, next_page=loose.next_page)
