"""One rule for a command that is about to send many requests (``query``, ``sync``): count them before the first.

Past :data:`MANY_REQUESTS` the command says so on stderr, how many and how to narrow the range; past
:data:`TOO_MANY_REQUESTS` it refuses to start unless :data:`ALLOW_FLAG` is given, so a mistyped year (``--since
2000-01-01``, ``--since 1000000000``) is an error line naming the range flag, never hours of requests.
"""

from __future__ import annotations

from typing import Annotated, Final

import typer

from usageledger._text import counted
from usageledger.errors import ParameterError

__all__ = ["ALLOW_FLAG", "MANY_REQUESTS", "TOO_MANY_REQUESTS", "AllowMany", "request_estimate"]

MANY_REQUESTS: Final = 100
"""Past this many requests, the command warns before starting and says how to narrow the range."""
TOO_MANY_REQUESTS: Final = 1_000
"""Past this many, it refuses to start without :data:`ALLOW_FLAG`: about 25 years of one daily usage endpoint (31
days a request), or three of the endpoints a sync reads by default; at the live API's pace, most of an hour or more."""
ALLOW_FLAG: Final = "--allow-many-requests"

AllowMany = Annotated[
    bool,
    typer.Option(
        ALLOW_FLAG, help=f"Send more than {TOO_MANY_REQUESTS:,} requests (refused without it: a mistyped range)."
    ),
]


def request_estimate(
    command: str, requests: int, detail: str, narrow: str, *, param: str, allowed: bool, judged: int | None = None
) -> str | None:
    """The warning line for ``requests`` (``None`` up to :data:`MANY_REQUESTS`), or the refusal past
    :data:`TOO_MANY_REQUESTS` unless ``allowed``, a :class:`ParameterError` naming ``param`` (the range's start).
    ``judged`` is the count the refusal is judged by, default ``requests``: ``sync`` gives its largest org's, since
    what is mistyped is the range every org reads, and fifty orgs are not a mistake.

    ``detail`` says what the requests read (``61 buckets of 1d, at most 31 per request``), ``narrow`` how to ask for
    fewer (``narrow --start/--end``)."""
    if requests <= MANY_REQUESTS:
        return None
    if (requests if judged is None else judged) > TOO_MANY_REQUESTS and not allowed:
        raise ParameterError(
            param,
            f"this {command} would take up to {counted(requests, 'request')} ({detail}); {narrow}, or pass"
            f" {ALLOW_FLAG} to send them",
        )
    return f"warning: this {command} may take up to {counted(requests, 'request')} ({detail}); {narrow}"
