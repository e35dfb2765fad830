"""The one exception tree.

``UsageLedgerError`` is the root. Below it, "no response" (:class:`APIConnectionError`, :class:`APITimeoutError`)
is kept apart from "got an error status" (:class:`APIStatusError` and its per-status subclasses), which carry
the status code, the API's ``type``/``message``/``param``/``code`` and the request id. Messages say what to do
next. No exception ever holds the admin key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from usageledger._keyshape import mask_keys

__all__ = [
    "RETRY_STATUSES",
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
    "Knobs",
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
    "advice",
    "is_retryable_status",
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
    """Anything that went wrong talking to the API.

    ``hint`` is the advice that ends the message, if any: what to do next, naming the library's own parameters
    (``max_retries=``, ``timeout=``). A caller whose user changes other settings (a command's flags and config keys)
    says :meth:`advised` with its own (:func:`advice` with its :class:`Knobs`), never the library's."""

    hint: str = ""

    def advised(self, hint: str | None) -> str:
        """The message with ``hint`` in place of the library's advice (``None`` or ``""``: no advice)."""
        text = str(self)
        if self.hint:
            text = text.removesuffix(f". {self.hint}")
        return f"{text}. {hint}" if hint else text


class APIConnectionError(APIError):
    """No response arrived: the connection failed or was dropped. The message says what happened; ``hint`` (by
    default :func:`advice` for the library's parameters) what to do, after it."""

    def __init__(self, message: object = "", *args: object, hint: str | None = None) -> None:
        self.hint = advice(self) if hint is None else hint
        text = f"{message}. {self.hint}" if self.hint else str(message)
        super().__init__(text, *args)


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
        self.hint = (_HINTS.get(status_code) or advice(self)) if hint is None else hint
        """What to do about this status, when there is one thing to say (a wrong key, a wrong base URL, a status
        still failing past the retries: :func:`advice`); the transport passes ``hint`` when it knows better (the
        corrected base URL of a 404)."""
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
}
"""The advice of a status that is the set-up's fault; a status worth retrying is told :func:`advice`'s."""

RETRY_STATUSES: Final = frozenset({408, 409, 429})
"""The statuses below 500 that are retried (every 5xx is too)."""


def is_retryable_status(status_code: int) -> bool:
    """Whether a response of ``status_code`` is retried."""
    return status_code in RETRY_STATUSES or status_code >= 500


@dataclass(frozen=True, slots=True)
class Knobs:
    """The settings that change how requests are sent, named as the user who meets an error writes them: the
    library's parameters (these defaults), or a command's flags and config keys (``sync``: ``--concurrency``,
    ``sync.max_retries``). ``None``: there is no such setting where that user is, so the advice leaves it out
    (``query`` has no retry or timeout flag). :func:`advice` words the advice from them."""

    again: str = "try"
    """The verb of "wait and try again": ``sync`` says "wait and sync again"."""
    max_retries: str | None = "max_retries="
    timeout: str | None = "timeout="
    concurrency: str | None = None
    """How many requests are in flight at once (``SyncOptions(concurrency=)``, ``--concurrency``)."""
    base_url: str | None = None
    """Where the base URL came from (``OPENAI_BASE_URL``, ``--base-url``), when it is known."""


LIBRARY_KNOBS: Final = Knobs()


def advice(error: APIError, knobs: Knobs = LIBRARY_KNOBS) -> str:
    """What to do about ``error`` when retrying more, waiting or asking less may cure it, naming the settings of
    ``knobs`` (a rate limit, a 5xx or a timeout past the retries, a host that does not answer); ``""`` for any other
    error, whose fix is not a setting of how requests are sent."""
    again = f"wait and {knobs.again} again"
    if isinstance(error, APITimeoutError):
        return _either("Timed out on every try", again, _raise(knobs.timeout, knobs.max_retries))
    if isinstance(error, APIConnectionError):
        where = f" (from {knobs.base_url})" if knobs.base_url else ""
        return f"Check the base URL{where} and the network"
    if not isinstance(error, APIStatusError) or not is_retryable_status(error.status_code):
        return ""
    retries = _raise(knobs.max_retries)
    if error.status_code == 429:
        fewer = f"lower {knobs.concurrency}" if knobs.concurrency else None
        return _either("Rate limited on every try", again, fewer, retries)
    return _either("Failed on every try", again, retries)


def _raise(*names: str | None) -> str | None:
    """The words "raise a or b" of the settings named (``None``: that setting is not there to raise)."""
    given = [n for n in names if n]
    return f"raise {' or '.join(given)}" if given else None


def _either(what: str, *fixes: str | None) -> str:
    """``what``, then the fixes given, as "what: a, b, or c"."""
    given = [f for f in fixes if f]
    return f"{what}: {given[0]}" if len(given) == 1 else f"{what}: {', '.join(given[:-1])}, or {given[-1]}"


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
