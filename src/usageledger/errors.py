"""The one exception tree.

``UsageLedgerError`` is the root. Below it, "no response" (:class:`APIConnectionError`, :class:`APITimeoutError`)
is kept apart from "got an error status" (:class:`APIStatusError` and its per-status subclasses), which carry
the status code, the API's ``type``/``message``/``param``/``code`` and the request id. Messages say what to do
next. No exception ever holds the admin key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from usageledger._keyshape import mask_keys

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AlertDeliveryError",
    "AuthenticationError",
    "BadRequestError",
    "BaseURLError",
    "CertificateError",
    "ClientClosedError",
    "ConfigError",
    "ConflictError",
    "EmulatorConfigError",
    "InsecureURLError",
    "InternalServerError",
    "ListenError",
    "NotFoundError",
    "PaginationError",
    "ParameterError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReplayError",
    "ResponseDecodeError",
    "StoreError",
    "SyncError",
    "UnprocessableEntityError",
    "UsageLedgerError",
    "status_error_class",
]


class UsageLedgerError(Exception):
    """Root of every error this package raises on purpose.

    Every error of the tree survives ``pickle`` and ``copy`` (a worker process sends its exception back pickled),
    whatever its constructor takes: it is rebuilt from its ``args`` (the finished, key-free message) and attributes,
    never by calling ``__init__`` again with arguments it does not take.

    Every text argument is masked here, once for the whole tree (:func:`~usageledger._keyshape.mask_keys`): a message
    may quote what a dependency said, and libpq quotes a mistyped store URL whole, password and all.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(mask_keys(a) if isinstance(a, str) else a for a in args))

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args), dict(vars(self))


def _rebuild(cls: type[UsageLedgerError], args: tuple[object, ...]) -> UsageLedgerError:
    """An error of ``cls`` holding ``args``, made without its ``__init__`` (its attributes follow, from the pickle)."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class ConfigError(UsageLedgerError):
    """The set-up is incomplete or wrong: a missing key, a bad base URL, an invalid config file.

    The message never holds a key: a key-shaped value typed into the wrong place is shown as its prefix only.
    ``source`` names where the refused value came from when one place did (``--config``, ``--base-url``,
    ``OPENAI_BASE_URL``, ``base_url=``): the command line exits 2 for a flag's value, as for any bad input.
    """

    def __init__(self, message: object = "", *args: object, source: str = "") -> None:
        super().__init__(str(message), *args)
        self.source = source


class BaseURLError(ConfigError):
    """A base URL refused as written (a query, a key or a password in it, another scheme, ...). ``source`` is where it
    came from (``--base-url``, ``OPENAI_BASE_URL``, ...), ``fix`` the refusal's own advice, the end of the message,
    and ``meant`` the URL it most likely meant when there is one (``http://127.0.0.1:8787/v1``), so ``doctor`` can
    say what to set where."""

    def __init__(self, message: object = "", *, source: str = "", fix: str = "", meant: str | None = None) -> None:
        super().__init__(message, source=source)
        self.fix = fix
        self.meant = meant


class CertificateError(ConfigError):
    """The TLS certificates cannot be loaded: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` names no readable CA bundle
    (or certifi's bundle is missing). Raised when a client is made; the message names the variable and the fix."""


class InsecureURLError(ConfigError):
    """A plain ``http://`` URL to a host that is not loopback, without ``allow_insecure_http=True``."""


class ClientClosedError(UsageLedgerError, RuntimeError):
    """A request on a client that is closed: ``close()`` / ``aclose()`` was called or its ``with`` block ended, or
    the ``http_client=`` it was given was closed. Make a new client (the message says which). A ``RuntimeError``
    too, as httpx's own refusal was."""


class ParameterError(UsageLedgerError, ValueError):
    """A request parameter breaks a rule of the live API; raised before any request is sent.

    ``param`` names the parameter; ``allowed`` lists the accepted values where there is a closed set.
    """

    def __init__(self, param: str, message: str, *, allowed: Sequence[object] | None = None) -> None:
        self.param = param
        self.allowed = tuple(allowed) if allowed is not None else None
        text = f"{param}: {message}"
        if self.allowed is not None:
            text += f" (allowed: {', '.join(str(a) for a in self.allowed)})"
        super().__init__(text)


class APIError(UsageLedgerError):
    """Anything that went wrong talking to the API."""


class APIConnectionError(APIError):
    """No response arrived: the connection failed or was dropped."""


class APITimeoutError(APIConnectionError):
    """No response arrived in time."""


class ResponseDecodeError(APIError):
    """A response arrived but its body is not a usage page."""


class PaginationError(APIError):
    """The server's cursors would loop or stop early: a repeated cursor, or ``has_more`` with no ``next_page``."""


class APIStatusError(APIError):
    """The API answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        parts = [f"HTTP {status_code}"]
        if type:
            parts.append(type)
        text = f"{' '.join(parts)}: {message}"
        if param:
            text += f" (param: {param})"
        if request_id:
            text += f" [request id {request_id}]"
        self.hint = _HINTS.get(status_code, "") if hint is None else hint
        """What to do about this status, when there is one thing to say (a wrong key, a wrong base URL); the
        transport passes ``hint`` when it knows better (the corrected base URL of a 404)."""
        if self.hint:
            text += f". {self.hint}"
        super().__init__(text)


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


_HINTS: Final[dict[int, str]] = {
    401: "Check the key: set OPENAI_ADMIN_KEY (or pass api_key=) to an admin key that starts with sk-admin-",
    403: "These endpoints need an organization admin key with the api.usage.read scope: set OPENAI_ADMIN_KEY (or pass"
    " api_key=) to one that starts with sk-admin-",
    404: "Check the base URL: it must end in /v1 (for example https://api.openai.com/v1)",
    429: "Rate limited: retry later, lower the concurrency, or raise max_retries",
}

_BY_STATUS: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status_code >= 500:
        return InternalServerError
    return _BY_STATUS.get(status_code, APIStatusError)


class StoreError(UsageLedgerError):
    """The store cannot be opened, migrated or written."""


class SyncError(UsageLedgerError):
    """A sync run could not finish; the message names the stream and window."""


class AlertDeliveryError(UsageLedgerError):
    """The webhook could not be delivered: no response, or a status other than 2xx."""


class ListenError(UsageLedgerError, OSError):
    """A server (the emulator, the dashboard) cannot listen on its host and port; the message says which of the two to
    change. An ``OSError`` too, with the ``errno`` of the failed bind."""


class EmulatorConfigError(ConfigError, ValueError):
    """The emulator's configuration is out of range: a fault rate outside [0, 1], a negative latency, no days.

    ``setting`` names the :class:`~usageledger.emulator.EmulatorConfig` field at fault (``days``), when one is, and
    ``reason`` says what is wrong with its value, so the command line can name its flag (``--days: ...``)."""

    def __init__(self, message: object = "", *args: object, setting: str | None = None, reason: str = "") -> None:
        super().__init__(message, *args)
        self.setting = setting
        self.reason = reason or str(message)


class ReplayError(EmulatorConfigError):
    """A replay file has a record that cannot be used; the message names the line."""
