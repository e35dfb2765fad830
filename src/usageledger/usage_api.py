"""``UsageApi``: the seed's face, a thin layer over :class:`~usageledger.client.Client`.

It mirrors the Perl ``WWW::OpenAPIClient::UsageApi``, whose signatures the tests keep in
``tests/data/seed_methods.txt``: constructed with ``access_token`` and a ``base_url`` that includes ``/v1``; one
method per endpoint named ``usage_<endpoint>`` with exactly the seed's keyword parameters, plus the newer filters;
each call sends one request and returns one :class:`UsageResponse` page. Where the Perl original dies, this raises a
typed exception from :mod:`usageledger.errors`.

The methods are written out for type checkers and editors; a test holds them to the catalogue's ``seed_params``
and filters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeAlias

import httpx

from usageledger._options import ArrayFormat, RetryPolicy, TimeoutTypes
from usageledger._secrets import normalize_key
from usageledger.client import Client
from usageledger.models import UsageResponse
from usageledger.timeutil import TimeInput

__all__ = ["UsageApi"]

Strs: TypeAlias = Sequence[str] | None


class UsageApi:
    """The seed-compatible client: ``UsageApi(access_token=..., base_url=...)``.

    ``access_token`` falls back to ``OPENAI_ADMIN_KEY``; ``base_url`` to ``OPENAI_BASE_URL``, then
    ``https://api.openai.com/v1``. The other options are :class:`~usageledger.client.Client`'s; or pass a ready
    ``client=``.
    """

    def __init__(
        self,
        access_token: str | None = None,
        base_url: str | None = None,
        *,
        timeout: TimeoutTypes = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        array_format: ArrayFormat = "brackets",
        allow_insecure_http: bool = False,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        client: Client | None = None,
    ) -> None:
        if access_token is not None and client is None:
            access_token = normalize_key(access_token, "access_token=")  # so an error names this argument
        self._client = client or Client(
            access_token,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
            array_format=array_format,
            allow_insecure_http=allow_insecure_http,
            transport=transport,
            headers=headers,
            clock=clock,
        )

    @property
    def client(self) -> Client:
        """The :class:`Client` underneath, for range queries and tables."""
        return self._client

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def __repr__(self) -> str:
        return f"UsageApi(base_url={self.base_url!r}, access_token='sk-admin-…')"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> UsageApi:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _page(self, endpoint: str, args: dict[str, Any]) -> UsageResponse:
        args.pop("self")
        start_time = args.pop("start_time")
        end_time = args.pop("end_time")
        bucket_width = args.pop("bucket_width")
        group_by = args.pop("group_by") or ()
        limit = args.pop("limit")
        page = args.pop("page")
        return self._client.page(
            endpoint,
            start_time=start_time,
            end_time=end_time,
            bucket_width=bucket_width,
            group_by=group_by,
            limit=limit,
            page=page,
            **args,
        )

    def usage_completions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        batch: bool | None = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of completions usage."""
        return self._page("completions", locals())

    def usage_embeddings(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of embeddings usage."""
        return self._page("embeddings", locals())

    def usage_moderations(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of moderations usage."""
        return self._page("moderations", locals())

    def usage_images(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        sources: Strs = None,
        sizes: Strs = None,
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of images usage."""
        return self._page("images", locals())

    def usage_audio_speeches(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of audio speeches usage."""
        return self._page("audio_speeches", locals())

    def usage_audio_transcriptions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of audio transcriptions usage."""
        return self._page("audio_transcriptions", locals())

    def usage_vector_stores(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of vector stores usage."""
        return self._page("vector_stores", locals())

    def usage_code_interpreter_sessions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> UsageResponse:
        """One page of code interpreter sessions usage."""
        return self._page("code_interpreter_sessions", locals())

    def usage_file_search_calls(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
        vector_store_ids: Strs = None,
    ) -> UsageResponse:
        """One page of file search calls usage."""
        return self._page("file_search_calls", locals())

    def usage_web_search_calls(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
        context_levels: Strs = None,
    ) -> UsageResponse:
        """One page of web search calls usage."""
        return self._page("web_search_calls", locals())

    def usage_decisions(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
        project_ids: Strs = None,
        user_ids: Strs = None,
        api_key_ids: Strs = None,
        models: Strs = None,
        batch: bool | None = None,
    ) -> UsageResponse:
        """One page of decisions usage."""
        return self._page("decisions", locals())

    def usage_costs(
        self,
        *,
        start_time: TimeInput,
        end_time: TimeInput | None = None,
        bucket_width: str = "1d",
        project_ids: Strs = None,
        group_by: Strs = None,
        limit: int | None = None,
        page: str | None = None,
        api_key_ids: Strs = None,
        line_items: Strs = None,
    ) -> UsageResponse:
        """One page of costs; money is exact `Decimal`."""
        return self._page("costs", locals())
