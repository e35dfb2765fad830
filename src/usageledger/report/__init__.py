"""Reports, reconciliation and alerts over the store: the answers people would rather look at than read.

Every figure is computed in SQL over the store's daily views (:mod:`usageledger.report.queries`); renderers
(:mod:`~usageledger.report.terminal`, :mod:`~usageledger.report.html`, :mod:`~usageledger.report.charts`) only
format. Nothing in this package prints.
"""

from __future__ import annotations

from usageledger.report.alerts import AlertConfig, CheckResult, parse_alert_config, run_checks
from usageledger.report.history import as_of, changes, deltas
from usageledger.report.names import Names, load_names, names_from_mapping, resolve_names
from usageledger.report.queries import Database, Period, ReportData, Scope, build_report
from usageledger.report.reconcile import ReconcileResult, reconcile

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
