"""The whole report of a period and scope as ``report`` shows it: figures, names, and where spend turns provisional.

One function for the ``report`` command and the dashboard's ``/api/report``, so both give the same document.
"""

from __future__ import annotations

from dataclasses import replace

from usageledger.report.finality import final_costs_until, provisional_from
from usageledger.report.names import Names, resolve_names
from usageledger.report.queries import Period, ReportData, Scope, build_report
from usageledger.store import BaseStore
from usageledger.sync_options import SyncOptions

__all__ = ["assemble_report"]


def assemble_report(
    db: BaseStore, period: Period, scope: Scope, *, options: SyncOptions, overrides: Names | None = None
) -> tuple[ReportData, Names]:
    """The report's figures (with ``provisional_from`` by the sync's finalization grace in ``options``) and the
    names to show for IDs: the store's directory, overridden by ``overrides``."""
    data = build_report(db, period, scope)
    id_names = resolve_names(db, org=scope.org, overrides=overrides)
    final = final_costs_until(db, options)
    return replace(data, provisional_from=provisional_from(final, scope.org)), id_names
