"""``UsageApi``: the seed's face, a thin layer over :class:`~usageledger.client.Client`.

It mirrors the Perl ``WWW::OpenAPIClient::UsageApi``, whose signatures the tests keep in
``tests/data/seed_methods.txt``: constructed with ``access_token`` and a ``base_url`` that includes ``/v1``; one
method per endpoint named ``usage_<endpoint>`` with exactly the seed's keyword parameters, plus the newer filters;
each call sends one request and returns one :class:`UsageResponse` page. Where the Perl original dies, this raises a
typed exception from :mod:`usageledger.errors`.

The ``usage_<endpoint>`` methods come from :class:`usageledger._endpoints.SeedMethods`, which ``scripts/generate``
writes from the catalogue; each hands its arguments to :meth:`UsageApi._seed_page`. The directory's
``list_<name>`` (one page) and ``retrieve_<item>`` methods come the same way from
:class:`usageledger._directory_endpoints.SeedDirectoryMethods`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Self, TypedDict, Unpack

import httpx

from usageledger._closing import Closing
from usageledger._directory import Items
from usageledger._directory_endpoints import SeedDirectoryMethods
from usageledger._endpoints import EndpointCall, SeedMethods
from usageledger._options import ArrayFormat, RetryPolicy, TimeoutTypes, key_from
from usageledger._secrets import hidden
from usageledger.client import AsyncClient, Client
from usageledger.errors import ConfigError
from usageledger.models import UsageResponse

__all__ = ["ClientSettings", "UsageApi"]


class ClientSettings(TypedDict, total=False):
    """The :class:`~usageledger.client.Client` options that ``UsageApi(...)`` passes on, as the client takes them."""

    timeout: TimeoutTypes
    max_retries: int | None
    retry: RetryPolicy | None
    array_format: ArrayFormat
    allow_insecure_http: bool
    transport: httpx.BaseTransport | None
    headers: Mapping[str, str] | None
    clock: Callable[[], float] | None


def _client_options() -> tuple[str, ...]:
    """The keyword options ``Client(...)`` takes beside its key and URL (``ClientSettings`` and the rest)."""
    params = inspect.signature(Client.__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _check_options(options: Mapping[str, object]) -> None:
    """Refuse an option ``Client`` does not take, naming it as passed to ``UsageApi``: ``api_key=`` (the modern
    face's name for ``access_token=``) was ignored and "no admin API key" said, or, with ``OPENAI_ADMIN_KEY`` set,
    was a TypeError from ``_ClientBase.__init__``; so was a misspelt option (``acess_token=``, ``timout=``)."""
    known = _client_options()
    for name in options:
        if name == "api_key":
            raise ConfigError(
                "UsageApi takes the admin key as access_token= (the seed's name), not api_key=: pass access_token="
                " or set OPENAI_ADMIN_KEY"
            )
        if name not in known:
            listed = ", ".join(f"{option}=" for option in known)
            raise ConfigError(
                f"UsageApi got an unknown option {name}=; it takes access_token=, base_url=, client= and {listed}"
            )


class UsageApi(Closing, SeedMethods, SeedDirectoryMethods):
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
        client: Client | None = None,
        **options: Unpack[ClientSettings],
    ) -> None:
        access_token = hidden(access_token)  # a traceback's locals show this frame's key by its prefix alone
        _check_options(options)
        if client is not None:
            # A ready client brings its own key, URL and options: any given beside it would be silently ignored
            # (the calls would go with another key, or to another server, than the one written here).
            beside = {"access_token": access_token, "base_url": base_url, **options}
            given = [name for name, value in beside.items() if value is not None]
            if given:
                raise ConfigError(
                    f"UsageApi(client=...) takes its settings from the client; {', '.join(given)} would be ignored:"
                    " pass them to Client(...) instead, or leave client= out"
                )
            if not isinstance(client, Client):
                hint = "; UsageApi is blocking" if isinstance(client, AsyncClient) else ""
                raise ConfigError(f"client= must be a usageledger.Client, got {type(client).__name__}{hint}")
            self._client = client
            return
        # resolved here, so a missing, empty or malformed key is named as this class spells it (`access_token=`)
        self._client = Client(key_from(access_token, param="access_token="), base_url, **options)

    @property
    def client(self) -> Client:
        """The :class:`Client` underneath, for range queries and tables."""
        return self._client

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def __repr__(self) -> str:
        if not hasattr(self, "_client"):  # its constructor failed: a traceback's `self` was a repr error
            return "UsageApi(<not made: its constructor failed>)"
        return f"UsageApi(base_url={self.base_url!r}, access_token='sk-admin-…')"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        self._client.__enter__()  # a closed client is refused here, as Client's own with refuses it
        return self

    def __copy__(self) -> UsageApi:
        """A copy over a copy of the client (:meth:`Client.__copy__`): closing one leaves the other open (a plain
        copy shared the client, so closing the copy closed the original)."""
        return UsageApi(client=copy.copy(self._client))

    def __deepcopy__(self, memo: dict[int, Any]) -> UsageApi:
        return self.__copy__()

    def _seed_page(self, call: EndpointCall) -> UsageResponse:
        return self._client._page(call)

    def _directory_get(self, path: str, items: Items, timeout: TimeoutTypes) -> bytes:
        return self._client._directory_get(path, items, timeout)
