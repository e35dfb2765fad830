"""The dashboard's own parts around the HTML report: the filter form, the project drill-down, an error page.

Plain HTML with every value escaped; links and the form are relative to this server, and the one script (submit
the form when a dropdown is picked with the mouse, or on Enter) is inline, so the page loads nothing from anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from html import escape
from typing import Any, Final
from urllib.parse import urlencode

from usageledger.report.formatting import format_count, format_money
from usageledger.report.queries import ReportData

__all__ = ["LIVE_SECONDS", "SCRIPT", "controls", "drill_down", "error_page", "project_link"]

LIVE_SECONDS: Final = 30
"""How often the page asks ``/healthz`` whether a sync has written since it was drawn."""

_FORM_SCRIPT: Final = """
(function () {
  var form = document.getElementById("filters");
  if (!form) { return; }
  form.querySelectorAll("select").forEach(function (el) {
    var keyed = false;
    el.addEventListener("keydown", function (event) {
      keyed = event.key !== "Enter";
      if (event.key === "Enter") { event.preventDefault(); form.submit(); }
    });
    el.addEventListener("pointerdown", function () { keyed = false; });
    el.addEventListener("change", function () {
      var team = form.elements.namedItem("team");
      if (el.name === "org" && team && team.value !== "unassigned") { team.value = ""; }
      if (!keyed) { form.submit(); }
    });
  });
}());
"""
"""A dropdown picked with the mouse applies at once; one stepped through with the arrow keys (which change it at
each press) waits for Enter or Apply, so a keyboard user can reach every option. Another org lets the team go (but
``unassigned``): the dropdown listed the teams of the org before, and one of them may be no team, or two, in the
next (``Platform (acme)`` in org beta, or ``Platform`` of acme with every org) and the page was an error."""

_LIVE_SCRIPT: Final = (
    """
(function () {
  var note = document.getElementById("live-note");
  var form = document.getElementById("filters");
  if (!note || !window.fetch) { return; }
  // the last sync the page was drawn from, and whether one was writing then (a sync keeps its time to its end)
  var seen = note.getAttribute("data-last-sync") || null, syncing = note.getAttribute("data-syncing") === "true";
  function editing() {
    if (!form) { return false; }
    if (form.contains(document.activeElement) && document.activeElement.tagName !== "BUTTON") { return true; }
    var changed = false;
    form.querySelectorAll("input").forEach(function (el) { if (el.value !== el.defaultValue) { changed = true; } });
    form.querySelectorAll("select").forEach(function (el) {
      var drawn = 0;  // the option the page was drawn with: the one marked selected, else the first
      for (var i = 0; i < el.options.length; i += 1) { if (el.options[i].defaultSelected) { drawn = i; } }
      if (el.selectedIndex !== drawn) { changed = true; }
    });
    return changed;
  }
  function say(text, link) {
    note.textContent = text;
    if (link) {
      var a = document.createElement("a");
      a.href = "#"; a.id = "live-reload"; a.textContent = "Reload";
      a.addEventListener("click", function (event) { event.preventDefault(); location.reload(); });
      note.appendChild(document.createTextNode(" ")); note.appendChild(a);
    }
  }
  function check() {
    if (document.hidden) { return; }
    fetch("/healthz", {cache: "no-store", credentials: "same-origin"}).then(function (answer) {
      return answer.ok ? answer.json() : null;
    }).then(function (health) {
      if (!health) { return; }
      if (health.syncing) {
        syncing = true;
        say("A sync is running: this page reloads when it has finished.");
        return;
      }
      if (health.last_sync === seen && !syncing) { return; }
      if (editing()) { say("New data has been synced since this page was drawn.", true); return; }
      location.reload();
    }).catch(function () { /* the server is away for a moment: ask again next time */ });
  }
  check();
  setInterval(check, """
    + str(LIVE_SECONDS * 1000)
    + """);
  document.addEventListener("visibilitychange", check);
}());
"""
)
"""The live page: every ``LIVE_SECONDS`` (and when the tab comes back into view) it asks ``/healthz`` for the last
sync, and reloads when a sync has finished since the page was drawn, keeping its filters (they are in its URL). While
someone is changing a filter it only offers a Reload link, so nothing they are typing is lost."""

SCRIPT: Final = _FORM_SCRIPT + _LIVE_SCRIPT
"""Everything the dashboard page runs, inline (the Content-Security-Policy allows no other script)."""

_STYLE: Final = """<style>
.filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:end;margin:0 0 1rem;padding:.8rem 1rem;
border:1px solid #ddd;border-radius:6px;background:#fafafa}
.filters label{display:flex;flex-direction:column;font-size:.8rem;color:#444;gap:.2rem;min-width:0;max-width:100%}
.filters input,.filters select{font:inherit;padding:.25rem .4rem;min-width:9rem;max-width:100%;box-sizing:border-box}
.provisional-note{margin:.4rem 0 1rem;padding:.4rem .8rem;border-left:4px solid #d9a400;background:#fff8e1}
#spend-by-project a{color:inherit}
.live-note{margin:-.4rem 0 1rem;font-size:.8rem;color:#555}
</style>"""
"""The dashboard's own rules: its filters and notes. The rest is the HTML report's stylesheet, phone rules included
(tables set tighter below 480 px, so the five-column ones fit a 360 px screen on the page and in ``report --html``)."""


def _link(params: Mapping[str, str | None], **changes: str | None) -> str:
    merged = {**params, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v is not None})


def _select(name: str, label: str, chosen: str | None, options: Sequence[tuple[str, str]]) -> str:
    items = ['<option value="">all</option>']
    for value, text in options:
        selected = " selected" if value == chosen else ""
        items.append(f'<option value="{escape(value)}"{selected}>{escape(text)}</option>')
    return f'<label>{escape(label)}<select name="{name}" id="filter-{name}">{"".join(items)}</select></label>'


def controls(
    params: Mapping[str, str | None],
    options: Mapping[str, Any],
    data: ReportData,
    last_sync: str | None = None,
    *,
    syncing: bool = False,
) -> str:
    """The filter form (period, org, project, team, model) and the provisional note (the report's warnings are the
    page's own: :func:`usageledger.report.html.render_html`). ``last_sync``: the last sync the page is drawn from,
    as ``/healthz`` says it, which the live page compares with what ``/healthz`` says later; ``syncing``: whether a
    sync was writing then (its end reloads the page)."""
    since, until = params.get("since") or "", params.get("until") or ""
    parts = [
        _STYLE,
        '<form id="filters" class="filters" method="get" action="/">',
        f'<label>since<input name="since" id="filter-since" value="{escape(since)}" placeholder="30d or 2026-11-01">'
        "</label>",
        f'<label>until (exclusive)<input name="until" id="filter-until" value="{escape(until)}" '
        'placeholder="tomorrow"></label>',
        _select("org", "org", params.get("org"), [(o, o) for o in options["orgs"]]),
        _select(
            "project",
            "project",
            params.get("project"),
            [(p["id"], p["name"] if p["name"] == p["id"] else f"{p['name']} ({p['id']})") for p in options["projects"]],
        ),
        _select("team", "team", params.get("team"), [(t, t) for t in options["teams"]]),
        _select("model", "model", params.get("model"), [(m, m) for m in options["models"]]),
        '<button type="submit" id="filter-apply">Apply</button>',
        "</form>",
        f'<p class="live-note" id="live-note" data-last-sync="{escape(last_sync or "")}"'
        f' data-syncing="{"true" if syncing else "false"}" aria-live="polite">'
        "Live: this page reloads when a sync has written new"
        f" data (it checks every {LIVE_SECONDS} s).</p>",
    ]
    first = data.provisional_from
    if first is not None and first < data.period.until:
        shown = max(first, data.period.since)
        parts.append(
            f'<p class="provisional-note" id="provisional-note" data-provisional-from="{first.isoformat()}">'
            f"Spend from {shown.isoformat()} to {(data.period.until - timedelta(days=1)).isoformat()} is provisional: "
            "the API may still restate it (drawn lighter in the charts).</p>"
        )
    return "\n".join(parts)


def _rows(rows: Sequence[Sequence[tuple[str, object]]]) -> str:
    out = []
    for row in rows:
        cells = []
        for i, (text, value) in enumerate(row):
            attrs = ' class="num"' if i > 0 else ""
            if value is not None:
                attrs += f' data-value="{escape(str(value))}"'
            cells.append(f"<td{attrs}>{text}</td>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    return "".join(out)


def _table(table_id: str, title: str, headers: Sequence[str], body: str, empty: str) -> str:
    head = "".join(f'<th scope="col"{" class=num" if i else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    if not body:
        body = f'<tr><td colspan="{len(headers)}">{escape(empty)}</td></tr>'
    return (
        f'<section class="panel drill"><h2>{escape(title)}</h2><table class="sortable" id="{table_id}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )


def project_link(params: Mapping[str, str | None]) -> Callable[[str], str]:
    """The address of a project's drill-down, this page's filters kept: the report's "Spend by project" links each
    name to it (:func:`usageledger.report.html.render_html`), so one table gives the projects' figures and the way
    in (a second table, "Drill down: projects", repeated its rows)."""
    return lambda project: _link(params, project=project)


def drill_down(params: Mapping[str, str | None], data: ReportData, project: Mapping[str, Any] | None) -> str:
    """With a project chosen, its models and its keys, and the way back to every project; else nothing."""
    if project is None:
        return ""
    cur = data.currency
    parts = []
    title = f"{project['project']['name']} ({project['project']['id']})"
    usage = {u["model"]: u for u in project["usage_by_model"]}
    models = []
    for m in project["spend_by_model"]:
        u = usage.get(m["model"])
        models.append(
            [
                (escape(m["model"] or "(no model)"), None),
                (escape(format_money(m["spend"], cur)), m["spend"]),
                (escape(format_count(u["tokens"])) if u else "-", u["tokens"] if u else None),
                (escape(format_count(u["requests"])) if u else "-", u["requests"] if u else None),
            ]
        )
    parts.append(
        _table(
            "drill-models",
            f"Models of {title}",
            ["model", "spend", "tokens", "requests"],
            _rows(models),
            "No spend on a model in this period",
        )
    )
    keys = []
    # Biggest first, as every other table: a long table shows its first rows only (report.js), and those must be the
    # keys that spent (``keys`` lists them by status and name). ``sorted`` is stable: equals keep that order.
    for k in sorted(project["keys"], key=lambda k: (-(k["spend"] or 0), -(k["requests"] or 0))):
        spend, requests = k["spend"], k["requests"]
        keys.append(
            [
                (escape(k["name"] or k["id"]) + f" <small>{escape(k['id'])}</small>", None),
                (escape(k["status"]), None),
                ("-" if spend is None else escape(format_money(spend, cur)), spend),
                ("-" if requests is None else escape(format_count(requests)), requests),
            ]
        )
    parts.append(
        _table(
            "drill-keys",
            f"API keys of {title}",
            ["key", "status", "spend", "requests"],
            _rows(keys),
            "No API key of this project in the store",
        )
    )
    if project.get("no_key_line"):  # the project's spend through no key, worded as `keys` words it
        parts.append(f'<p id="drill-no-key">{escape(project["no_key_line"])}</p>')
    parts.append(f'<p><a href="{escape(_link(params, project=None))}" id="all-projects">All projects</a></p>')
    return "\n".join(parts)


def error_page(message: str) -> str:
    """A plain page saying what is wrong with the request (or the store) and how to start over; on a phone at the
    phone's width (without the viewport line it was drawn 980 px wide and shrunk to a third: unreadable)."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>usageledger: error</title></head><body>"
        f'<h1>Cannot show this report</h1><p id="error">{escape(message)}</p>'
        '<p><a href="/">Back to the last 30 days</a></p></body></html>'
    )
