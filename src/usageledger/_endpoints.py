"""The typed per-endpoint methods both clients share: ``client.completions(...)``, ``client.costs(...)`` and so on.

Each method spells out its endpoint's filters, and ``Literal`` types for ``group_by``, ``bucket_width`` and the
closed filter values, so type checkers and editors can help. They restate catalogue facts on purpose, for typing;
``tests/test_client.py`` holds every method to :mod:`usageledger.catalogue` (names, filters, group_by values,
widths), so they cannot drift. Each returns the client's lazy range query (``Query`` or ``AsyncQuery``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from usageledger._http import TimeoutTypes
from usageledger.catalogue import BucketWidth
from usageledger.timeutil import TimeInput

__all__ = ["COMMON_ARGS", "EndpointMethods", "common_args", "filter_args"]

Q = TypeVar("Q")

PerModelGroupBy = Literal["project_id", "user_id", "api_key_id", "model"]
CompletionsGroupBy = Literal["project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source"]
ImagesGroupBy = Literal["project_id", "user_id", "api_key_id", "model", "size", "source"]
ProjectGroupBy = Literal["project_id"]
FileSearchGroupBy = Literal["project_id", "user_id", "api_key_id", "vector_store_id"]
WebSearchGroupBy = Literal["project_id", "user_id", "api_key_id", "model", "context_level", "api_source"]
CostsGroupBy = Literal["project_id", "line_item", "api_key_id", "user_id", "api_source"]
ImageSource = Literal["image.generation", "image.edit", "image.variation"]
ImageSize = Literal["256x256", "512x512", "1024x1024", "1792x1792", "1024x1792"]
ContextLevel = Literal["low", "medium", "high"]
Strs: TypeAlias = Sequence[str] | None

COMMON_ARGS = ("start_time", "end_time", "bucket_width", "group_by", "timeout")


def common_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: args[k] for k in COMMON_ARGS}


def filter_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in COMMON_ARGS}


class EndpointMethods(ABC, Generic[Q]):
    """One typed method per catalogue endpoint, each returning the client's lazy range query."""

    @abstractmethod
    def _endpoint_query(self, name: str, args: dict[str, Any]) -> Q:
        """The client's lazy query for endpoint ``name`` with the method's arguments; each client provides it."""

    def _call(self, name: str, args: dict[str, Any]) -> Q:
        return self._endpoint_query(name, {k: v for k, v in args.items() if k != "self"})

    def completions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[CompletionsGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        batch: bool | None = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Completions usage over ``[start_time, end_time)``."""
        return self._call("completions", locals())

    def embeddings(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[PerModelGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Embeddings usage over ``[start_time, end_time)``."""
        return self._call("embeddings", locals())

    def moderations(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[PerModelGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Moderations usage over ``[start_time, end_time)``."""
        return self._call("moderations", locals())

    def images(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[ImagesGroupBy] = (),
        sources: Sequence[ImageSource] | None = None,
        sizes: Sequence[ImageSize] | None = None,
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Images usage over ``[start_time, end_time)``."""
        return self._call("images", locals())

    def audio_speeches(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[PerModelGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Audio speeches usage over ``[start_time, end_time)``."""
        return self._call("audio_speeches", locals())

    def audio_transcriptions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[PerModelGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Audio transcriptions usage over ``[start_time, end_time)``."""
        return self._call("audio_transcriptions", locals())

    def vector_stores(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[ProjectGroupBy] = (),
        project_ids: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Vector store usage over ``[start_time, end_time)``."""
        return self._call("vector_stores", locals())

    def code_interpreter_sessions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[ProjectGroupBy] = (),
        project_ids: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Code interpreter sessions over ``[start_time, end_time)``."""
        return self._call("code_interpreter_sessions", locals())

    def file_search_calls(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[FileSearchGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        vector_store_ids: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """File search tool calls over ``[start_time, end_time)``."""
        return self._call("file_search_calls", locals())

    def web_search_calls(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[WebSearchGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        context_levels: Sequence[ContextLevel] | None = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Web search tool calls over ``[start_time, end_time)``."""
        return self._call("web_search_calls", locals())

    def decisions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: BucketWidth = "1d",
        group_by: Sequence[CompletionsGroupBy] = (),
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        batch: bool | None = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Decisions usage (SDK-only endpoint) over ``[start_time, end_time)``."""
        return self._call("decisions", locals())

    def costs(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: Literal["1d"] = "1d",
        group_by: Sequence[CostsGroupBy] = (),
        project_ids: Strs = None,
        api_key_ids: Strs = None,
        line_items: Strs = None,
        timeout: TimeoutTypes = None,
    ) -> Q:
        """Costs (daily buckets, exact ``Decimal`` money) over ``[start_time, end_time)``."""
        return self._call("costs", locals())
