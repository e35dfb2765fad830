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


def test_a_lazy_public_name_is_what_it_names_whatever_was_imported_first() -> None:
    """`from usageledger.report import ReconcileResult, reconcile` (or `import *`) gave the module
    `usageledger.report.reconcile`, not the function: importing the submodule of ReconcileResult set the package's
    attribute of that name, which the lazy look-up never overrode, so `reconcile(db, period)` was "TypeError: 'module'
    object is not callable". No public name of a package is the name of one of its submodules, and each is what its
    module defines, in a process that first imports every name listed before it."""
    import importlib
    import os
    import pkgutil
    import subprocess
    import sys
    from pathlib import Path

    for package in ("usageledger", "usageledger.report"):
        module = importlib.import_module(package)
        submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
        assert set(module.__all__) & submodules <= {"catalogue"}, package  # usageledger.catalogue is the module
    script = (
        "import types\n"
        "from usageledger.report import *\n"
        "from usageledger.report import reconcile\n"
        "assert not isinstance(reconcile, types.ModuleType), reconcile\n"
        "assert callable(reconcile) and reconcile.__module__.startswith('usageledger.report.')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(usageledger.__file__).parents[1])}  # this tree's package
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
