"""usageledger: OpenAI organization Usage & Costs, as a typed client, an emulator, a synced ledger and reports.

The public names are imported on first use (PEP 562), so ``import usageledger`` (and the CLI's start-up) stays
light: nothing here pulls in httpx, pyarrow or DuckDB until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usageledger import catalogue
    from usageledger._directory import AsyncDirectoryQuery, DirectoryQuery
    from usageledger._http import RetryPolicy
    from usageledger.catalogue import ENDPOINTS, Endpoint
    from usageledger.client import AsyncClient, AsyncQuery, Client, Query
    from usageledger.directory_models import DirectoryPage
    from usageledger.errors import (
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ClientClosedError,
        ConfigError,
        ConflictError,
        InsecureURLError,
        InternalServerError,
        NotFoundError,
        PaginationError,
        ParameterError,
        PermissionDeniedError,
        RateLimitError,
        ResponseDecodeError,
        StoreError,
        SyncError,
        UnprocessableEntityError,
        UsageLedgerError,
    )
    from usageledger.models import (
        AudioSpeechesResult,
        AudioTranscriptionsResult,
        Bucket,
        CodeInterpreterSessionsResult,
        CompletionsResult,
        CostAmount,
        CostsResult,
        DecisionsResult,
        EmbeddingsResult,
        FileSearchCallsResult,
        ImagesResult,
        ModerationsResult,
        OpaqueResult,
        Result,
        UsageResponse,
        VectorStoresResult,
        WebSearchCallsResult,
        decode_page,
    )
    from usageledger.usage_api import UsageApi

__version__ = "0.1.0"

__all__ = [
    "ENDPOINTS",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncDirectoryQuery",
    "AsyncQuery",
    "AudioSpeechesResult",
    "AudioTranscriptionsResult",
    "AuthenticationError",
    "BadRequestError",
    "Bucket",
    "Client",
    "ClientClosedError",
    "CodeInterpreterSessionsResult",
    "CompletionsResult",
    "ConfigError",
    "ConflictError",
    "CostAmount",
    "CostsResult",
    "DecisionsResult",
    "DirectoryPage",
    "DirectoryQuery",
    "EmbeddingsResult",
    "Endpoint",
    "FileSearchCallsResult",
    "ImagesResult",
    "InsecureURLError",
    "InternalServerError",
    "ModerationsResult",
    "NotFoundError",
    "OpaqueResult",
    "PaginationError",
    "ParameterError",
    "PermissionDeniedError",
    "Query",
    "RateLimitError",
    "ResponseDecodeError",
    "Result",
    "RetryPolicy",
    "StoreError",
    "SyncError",
    "UnprocessableEntityError",
    "UsageApi",
    "UsageLedgerError",
    "UsageResponse",
    "VectorStoresResult",
    "WebSearchCallsResult",
    "__version__",
    "catalogue",
    "decode_page",
]

_WHERE: dict[str, str] = {
    "catalogue": "usageledger.catalogue",
    "AsyncDirectoryQuery": "usageledger._directory",
    "DirectoryQuery": "usageledger._directory",
    "RetryPolicy": "usageledger._http",
    "ENDPOINTS": "usageledger.catalogue",
    "Endpoint": "usageledger.catalogue",
    "AsyncClient": "usageledger.client",
    "AsyncQuery": "usageledger.client",
    "Client": "usageledger.client",
    "Query": "usageledger.client",
    "DirectoryPage": "usageledger.directory_models",
    "APIConnectionError": "usageledger.errors",
    "APIError": "usageledger.errors",
    "APIStatusError": "usageledger.errors",
    "APITimeoutError": "usageledger.errors",
    "AuthenticationError": "usageledger.errors",
    "BadRequestError": "usageledger.errors",
    "ClientClosedError": "usageledger.errors",
    "ConfigError": "usageledger.errors",
    "ConflictError": "usageledger.errors",
    "InsecureURLError": "usageledger.errors",
    "InternalServerError": "usageledger.errors",
    "NotFoundError": "usageledger.errors",
    "PaginationError": "usageledger.errors",
    "ParameterError": "usageledger.errors",
    "PermissionDeniedError": "usageledger.errors",
    "RateLimitError": "usageledger.errors",
    "ResponseDecodeError": "usageledger.errors",
    "StoreError": "usageledger.errors",
    "SyncError": "usageledger.errors",
    "UnprocessableEntityError": "usageledger.errors",
    "UsageLedgerError": "usageledger.errors",
    "AudioSpeechesResult": "usageledger.models",
    "AudioTranscriptionsResult": "usageledger.models",
    "Bucket": "usageledger.models",
    "CodeInterpreterSessionsResult": "usageledger.models",
    "CompletionsResult": "usageledger.models",
    "CostAmount": "usageledger.models",
    "CostsResult": "usageledger.models",
    "DecisionsResult": "usageledger.models",
    "EmbeddingsResult": "usageledger.models",
    "FileSearchCallsResult": "usageledger.models",
    "ImagesResult": "usageledger.models",
    "ModerationsResult": "usageledger.models",
    "OpaqueResult": "usageledger.models",
    "Result": "usageledger.models",
    "UsageResponse": "usageledger.models",
    "VectorStoresResult": "usageledger.models",
    "WebSearchCallsResult": "usageledger.models",
    "decode_page": "usageledger.models",
    "UsageApi": "usageledger.usage_api",
}
"""Each lazily imported public name -> the module that defines it (a submodule name -> the submodule itself)."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"{__name__}.{name}" else getattr(imported, name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
