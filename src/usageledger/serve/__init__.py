"""``usageledger serve``: the dashboard and its JSON API over the local store, read-only (see :func:`build_app`)."""

from __future__ import annotations

from usageledger.serve.app import build_app

__all__ = ["build_app"]
