"""The public names: an explicit, pinned ``__all__``."""

from __future__ import annotations

import usageledger

PUBLIC = {
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
    "DirectoryPage",
    "DirectoryQuery",
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
}


def test_all_is_pinned() -> None:
    """__all__ lists exactly the public names, without duplicates; changing it is a deliberate act."""
    assert set(usageledger.__all__) == PUBLIC
    assert len(usageledger.__all__) == len(set(usageledger.__all__))


def test_every_public_name_is_importable() -> None:
    """Each name in __all__ exists on the package."""
    missing = [name for name in usageledger.__all__ if not hasattr(usageledger, name)]
    assert missing == []


def test_client_names_come_from_their_modules() -> None:
    """The client-facing names are the real classes, not copies."""
    from usageledger._http import RetryPolicy
    from usageledger.client import AsyncClient, AsyncQuery, Client, Query
    from usageledger.usage_api import UsageApi

    assert (usageledger.Client, usageledger.AsyncClient, usageledger.Query, usageledger.AsyncQuery) == (
        Client,
        AsyncClient,
        Query,
        AsyncQuery,
    )
    assert (usageledger.UsageApi, usageledger.RetryPolicy) == (UsageApi, RetryPolicy)
