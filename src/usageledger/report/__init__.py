"""Reports, reconciliation and alerts over the store: the answers people would rather look at than read.

Every figure is computed in SQL over the store's daily views (:mod:`usageledger.report.queries`); renderers
(:mod:`~usageledger.report.terminal`, :mod:`~usageledger.report.html`, :mod:`~usageledger.report.charts`) only
format. Nothing in this package prints.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usageledger.report.alerts import AlertConfig, CheckResult, parse_alert_config, run_checks
    from usageledger.report.history import as_of, changes, deltas
    from usageledger.report.names import Names, load_names, names_from_mapping, resolve_names
    from usageledger.report.queries import Database, Period, ReportData, Scope, build_report
    from usageledger.report.reconciliation import ReconcileResult, reconcile

__all__ = [
    "AlertConfig",
    "CheckResult",
    "Database",
    "Names",
    "Period",
    "ReconcileResult",
    "ReportData",
    "Scope",
    "as_of",
    "build_report",
    "changes",
    "deltas",
    "load_names",
    "names_from_mapping",
    "parse_alert_config",
    "reconcile",
    "resolve_names",
    "run_checks",
]

_WHERE = {
    "AlertConfig": "alerts",
    "CheckResult": "alerts",
    "Database": "queries",
    "Names": "names",
    "Period": "queries",
    "ReconcileResult": "reconciliation",
    "ReportData": "queries",
    "Scope": "queries",
    "as_of": "history",
    "build_report": "queries",
    "changes": "history",
    "deltas": "history",
    "load_names": "names",
    "names_from_mapping": "names",
    "parse_alert_config": "alerts",
    "reconcile": "reconciliation",
    "resolve_names": "names",
    "run_checks": "alerts",
}
"""Each public name -> the submodule that defines it: importing ``usageledger.report.jsonout`` (a sync's status
line) does not import the alerts, history and reconciliation modules and what they import (~0.1 s, httpx among
them)."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
