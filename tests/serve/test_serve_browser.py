"""The dashboard in headless Chromium, served by a real `usageledger serve` on loopback over a store synced from the
emulator: change the period and pick a project, and the figures on the page equal the JSON API and a direct SQL sum;
the console stays clean, the screenshot is not blank, and no request leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import duckdb
import httpx
import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Browser, Page, Route
from starlette.testclient import TestClient

from usageledger import catalogue
from usageledger.config import Config
from usageledger.emulator import Emulator, EmulatorConfig
from usageledger.errors import StoreError
from usageledger.report.formatting import format_money
from usageledger.serve import build_app
from usageledger.serve.dashboard import LIVE_SECONDS
from usageledger.store import Stream, StreamMark, open_store
from usageledger.sync import Org, SyncOptions, SyncResult, sync
from usageledger.sync._safety import this_process

from fixtures.data import FAKE_ADMIN_KEY
from fixtures.emulator import EMULATOR_NOW

CLI = [sys.executable, "-c", "from usageledger.cli import main; main()"]


@pytest.fixture(scope="module")
def store(demo_command_store: Path) -> str:
    """`usageledger demo`: the emulator synced into a fresh DuckDB store."""
    return str(demo_command_store)


@pytest.fixture
def browser(module_browser: Browser) -> Browser:
    """One Chromium for the module (``fixtures.browser.module_browser``: a launch costs about 2 s of CPU), not one a
    test: every test here drives a page, opens its own context and closes it, and none runs an event loop of its
    own."""
    return module_browser


@pytest.fixture(scope="module")
def server(store: str) -> Iterator[str]:
    """`usageledger serve` on a free loopback port; its base URL (``http://127.0.0.1:PORT/``)."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--store", store, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert " at http://127.0.0.1:" in line, (line, proc.poll())
    try:
        yield line.split(" at ", 1)[1].split(" ", 1)[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err


def _sql_sum(store: str, since: str, until: str, project: str | None = None) -> Decimal:
    sql = "SELECT COALESCE(SUM(amount_value), 0) FROM costs_daily WHERE bucket_start >= ?::TIMESTAMPTZ"
    sql += " AND bucket_start < ?::TIMESTAMPTZ"
    params: list[object] = [f"{since}T00:00:00Z", f"{until}T00:00:00Z"]
    if project is not None:
        sql += " AND project_id = ?"
        params.append(project)
    with duckdb.connect(store, read_only=True) as con:
        row = con.execute(sql, params).fetchone()
    assert row is not None
    return Decimal(row[0])


def _api(base: str, **params: str) -> dict[str, Any]:
    got = httpx.get(base + "api/report?" + urlencode(params), timeout=60)
    assert got.status_code == 200, got.text
    document: dict[str, Any] = got.json()
    return document


def _page_figures(page: Page) -> tuple[str, Decimal]:
    """The Spend card's text, and the exact sum of the project table's spend cells."""
    card = page.locator(".card .value").first.inner_text().strip()
    values = page.locator("#spend-by-project td.num[data-value]").evaluate_all(
        "cells => cells.filter(c => c.cellIndex === 1).map(c => c.getAttribute('data-value'))"
    )
    return card, sum((Decimal(v) for v in values), Decimal(0))


def _check(page: Page, base: str, store: str, since: str, until: str, project: str | None = None) -> Decimal:
    params = {"since": since, "until": until, **({"project": project} if project else {})}
    document = _api(base, **params)
    total = Decimal(document["totals"]["spend"])
    card, table_sum = _page_figures(page)
    assert total == _sql_sum(store, since, until, project) and total > 0
    assert card == format_money(total, document["currency"]), (card, total)
    assert table_sum == total
    return total


def test_the_dashboard_in_chromium_follows_the_period_and_a_project(
    browser: Browser, server: str, store: str, tmp_path: Path
) -> None:
    requests: list[str] = []
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1440, "height": 1000})

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        with duckdb.connect(store, read_only=True) as con:
            row = con.execute("SELECT max(bucket_start) FROM costs_daily").fetchone()
        assert row is not None
        last = row[0].astimezone(UTC).date()
        until = (last + timedelta(days=1)).isoformat()
        since = (last - timedelta(days=29)).isoformat()
        page.goto(server + "?" + urlencode({"since": since, "until": until}))
        month = _check(page, server, store, since, until)

        # A shorter period, typed into the form and applied.
        shorter = (last - timedelta(days=6)).isoformat()
        page.fill("#filter-since", shorter)
        with page.expect_navigation():
            page.click("#filter-apply")
        week = _check(page, server, store, shorter, until)
        assert week < month

        # A project from the dropdown: choosing it reloads the page with its figures and its drill-down.
        options = page.locator("#filter-project option").evaluate_all("os => os.map(o => o.value).filter(v => v)")
        assert len(options) >= 2
        project = options[1]
        with page.expect_navigation():
            page.select_option("#filter-project", project)
        assert page.locator("#filter-project").input_value() == project
        alone = _check(page, server, store, shorter, until, project)
        assert alone < week
        assert page.locator("#drill-models tbody tr").count() >= 1
        assert page.locator("#drill-keys tbody tr").count() >= 1

        # Or a project's name in "Spend by project", the one table of projects: a click opens its drill-down.
        with page.expect_navigation():
            page.click("#all-projects")
        assert page.locator("#drill-projects").count() == 0 and page.locator("#drill-models").count() == 0
        link = page.locator("#spend-by-project tbody a").nth(1)
        name = link.inner_text()
        with page.expect_navigation():
            link.click()
        assert page.locator("#filter-project option:checked").inner_text().startswith(name)
        assert page.locator("#drill-keys tbody tr").count() >= 1
        _check(page, server, store, shorter, until, page.locator("#filter-project").input_value())

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        with Image.open(shot) as image:
            stat = ImageStat.Stat(image.convert("L"))
            assert image.size[0] >= 1440 and stat.stddev[0] > 10, stat.stddev  # drawn, not one flat colour
    finally:
        context.close()
    assert errors == []
    assert requests and all(urlsplit(u).hostname == "127.0.0.1" for u in requests), requests


def test_the_dashboard_fits_a_phone_and_a_narrow_window(browser: Browser, server: str) -> None:
    """At 375 px and at 640 px the page never scrolls sideways: the filters (a project's name with its ID is wider
    than a phone) shrink to the window, and a wide table scrolls inside its own panel."""
    for width in (375, 640):
        context = browser.new_context(viewport={"width": width, "height": 800})
        try:
            page = context.new_page()
            page.goto(server)
            widest = page.evaluate("document.documentElement.scrollWidth")
            box = page.locator("#filter-project").bounding_box()
            assert box is not None
            assert widest <= width, (width, widest)
            assert box["x"] + box["width"] <= width, (width, box)
        finally:
            context.close()


def test_on_a_360_px_phone_every_figure_is_whole_and_an_error_is_readable(browser: Browser, server: str) -> None:
    """At 360 px the five-column tables (tokens by model, the top movers) scrolled inside their panels, each figure
    cut at the panel's edge (`+$1` of `+$193.27`): every table now fits its panel, on the page and on a project's
    drill-down. The error page had no viewport line, so a phone drew it 980 px wide and shrank it to a third."""
    project = httpx.get(server + "api/filters", timeout=60).json()["projects"][0]["id"]
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        for query in ("", "?" + urlencode({"project": project})):
            page.goto(server + query)
            assert page.locator("#spend-by-project").count() == 1
            cut = page.evaluate(
                "() => [...document.querySelectorAll('section.panel')]"
                ".filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.querySelector('h2').textContent)"
            )
            assert cut == [], (query, cut)
            assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.goto(server + "?since=yesterdayish")
        assert page.locator("#error").inner_text().startswith("since: cannot read 'yesterdayish'")
        assert page.evaluate("window.innerWidth") == 360
    finally:
        context.close()


def test_a_dropdown_stepped_through_with_the_keyboard_applies_on_enter(browser: Browser, server: str) -> None:
    """Arrow keys on a focused dropdown change it at each press: the page waits for Enter (or Apply) rather than
    reloading at the first press, so a keyboard user can reach any option; Enter applies the one chosen."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(server)
        options = page.locator("#filter-model option").evaluate_all("os => os.map(o => o.value)")
        assert len(options) >= 3 and options[0] == ""
        # Count submissions as they are made (a reload would only begin after the press returned).
        page.evaluate(
            "() => { window.submits = 0; const submit = HTMLFormElement.prototype.submit;"
            " HTMLFormElement.prototype.submit = function () { window.submits += 1; return submit.call(this); }; }"
        )
        page.focus("#filter-model")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        assert page.evaluate("window.submits") == 0
        assert page.locator("#filter-model").input_value() == options[2]
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.locator("#filter-model").input_value() == options[2]
        assert f"model={options[2]}" in urlsplit(page.url).query
    finally:
        context.close()


def test_a_long_project_name_wraps_on_a_phone(browser: Browser, store: str) -> None:
    """A project named without spaces (a slug, 90 characters) chosen on the page pushed it 400 px past a 375 px
    phone: the period line and the drill-down's headings, which carry the name, now wrap it."""
    with TestClient(build_app(store)) as plain:
        project = plain.get("/api/filters").json()["projects"][0]["id"]
    name = "MarketingCopy" + "AndOn" * 15 + "WithoutSpaces"
    with TestClient(build_app(store, config=Config(names={"projects": {project: name}}))) as client:
        page_html = client.get("/", params={"project": project}).text
    assert name in page_html
    context = browser.new_context(viewport={"width": 375, "height": 800}, offline=True)
    try:
        page = context.new_page()
        page.set_content(page_html)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()


@pytest.fixture(scope="module")
def many_projects_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Decimal]:
    """The dashboard's page over an org of 40 projects named as a big org names them (``names="world"``: CJK, emoji,
    right to left), 14 days of costs by project and line item; and its spend total as ``/api/report`` gives it."""
    emulator = Emulator(
        EmulatorConfig(seed=3, days=30, projects=40, users=5, models=3, names="world", now=EMULATOR_NOW)
    )
    store = str(tmp_path_factory.mktemp("many-projects") / "ledger.duckdb")
    costs = Stream.create(catalogue.get("costs"), "1d", ["project_id", "line_item"], {})
    since = EMULATOR_NOW - EMULATOR_NOW % 86400 - 13 * 86400

    def fill() -> SyncResult:
        with open_store(store) as db:
            return sync(
                db,
                [Org("default", FAKE_ADMIN_KEY)],
                [costs],
                SyncOptions(since=since),
                transport=emulator.transport(),
                clock=lambda: EMULATOR_NOW,
            )

    # in a thread of its own: the sync runs an event loop, and Playwright's already runs in this one
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(fill).result()
    assert done.ok, done.errors
    now = datetime.fromtimestamp(EMULATOR_NOW, UTC)
    with TestClient(build_app(store, now=lambda: now)) as client:
        page = client.get("/", params={"since": "14d"})
        report = client.get("/api/report", params={"since": "14d"}).json()
    assert page.status_code == 200, page.text
    return page.text, Decimal(report["totals"]["spend"])


def _rows(page: Page, table: str) -> list[tuple[str, Decimal, bool]]:
    """Every row of a table in the order the page holds them, shown or not: its first cell's text, its spend (the
    second cell's exact value) and whether it is shown."""
    got = page.locator(f"#{table} tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].getAttribute('data-value'),"
        " r.getClientRects().length > 0])"
    )
    return [(name, Decimal(value), shown) for name, value, shown in got]


def test_a_long_table_shows_its_biggest_rows_and_the_rest_on_demand_and_sorts_every_row(
    browser: Browser, many_projects_page: tuple[str, Decimal]
) -> None:
    """A big org's project tables drew every row (281 of them, a page 23,000 px tall): a table of more than 30 rows
    shows its 25 biggest and a button "N more" that shows the rest in place; a header click sorts every row, shown or
    not, and shows the first 25 of that order; the rows still add up to the total. On a phone too."""
    html, total = many_projects_page
    errors: list[str] = []
    for width in (1280, 360):
        context = browser.new_context(viewport={"width": width, "height": 800}, offline=True)
        try:
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_content(html)
            assert page.locator("#drill-projects").count() == 0  # the projects' one table links to drill-downs
            table = "spend-by-project"
            rows = _rows(page, table)
            count = len(rows)
            assert count > 30
            assert page.locator(f"#{table} tbody tr td:first-child > a[href^='?']").count() == count  # every one
            spends = [spend for _, spend, _ in rows]
            assert sum(spends, Decimal(0)) == total  # every row is on the page, shown or not
            assert spends == sorted(spends, reverse=True)  # biggest first
            assert [shown for *_, shown in rows] == [True] * 25 + [False] * (count - 25)
            more = page.locator(f"#{table}-more")
            assert more.inner_text() == f"{count - 25} more"
            assert more.get_attribute("aria-expanded") == "false"

            page.locator(f"#{table} thead th").nth(1).click()  # by spend, smallest first: every row
            rows = _rows(page, table)
            assert [spend for _, spend, _ in rows] == sorted(spends)
            assert [shown for *_, shown in rows] == [True] * 25 + [False] * (count - 25)

            more.click()  # the rest, in place, in the order sorted
            rows = _rows(page, table)
            assert [shown for *_, shown in rows] == [True] * count
            assert [spend for _, spend, _ in rows] == sorted(spends)
            assert more.inner_text() == "Show the first 25"
            assert more.get_attribute("aria-expanded") == "true"

            page.locator(f"#{table} thead th").nth(0).click()  # by name: every row, all still shown
            names = [name.strip().lower() for name, _, shown in _rows(page, table) if shown]
            assert len(names) == count
            assert names == sorted(names, key=lambda name: name.encode("utf-16-be"))  # as JavaScript compares

            more.click()
            assert [shown for *_, shown in _rows(page, table)] == [True] * 25 + [False] * (count - 25)
            assert more.inner_text() == f"{count - 25} more"
            # a short table keeps every row, with no button
            assert (
                page.locator("#spend-by-model tbody tr:visible").count()
                == page.locator("#spend-by-model tbody tr").count()
            )
            assert page.locator("#spend-by-model-more").count() == 0
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            box = page.locator("#spend-by-project-more").bounding_box()
            assert box is not None and box["x"] + box["width"] <= width
            assert page.evaluate("document.documentElement.scrollHeight") < 12_000
        finally:
            context.close()
    assert errors == []


def _serve(store: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--store", store, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert " at http://127.0.0.1:" in line, (line, proc.poll())
    return proc, line.split(" at ", 1)[1].split(" ", 1)[0]


def _a_sync_writes(store: str, at: int) -> None:
    """What a sync from cron does to the store at its end, through the store's own API: its streams marked ``ok``
    at a new time (the server lets the file go a second after each request; wait for that)."""
    for _ in range(100):
        try:
            with open_store(store, brief="test: a sync ends") as db:
                state = db.stream_states()[0]
                db.mark_stream(state.org, state.stream, run_id=f"run-{at}", at=at, status="ok")
                return
        except StoreError:
            time.sleep(0.1)
    raise AssertionError("the served store stayed locked")


@contextlib.contextmanager
def _live_page(browser: Browser, store: Path, *, hidden: bool = False) -> Iterator[Page]:
    """A page of `usageledger serve` over ``store`` (a copy of the demo's), with Playwright's fake clock; ``hidden``:
    a background tab (``document.hidden`` true until the test sets ``window.hiddenTab = false``). The server is
    stopped at the end, and must exit 0."""
    proc, base = _serve(str(store))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        if hidden:
            page.add_init_script(
                "window.hiddenTab = true;"
                " Object.defineProperty(document, 'hidden', {configurable: true, get: () => window.hiddenTab});"
            )
        page.clock.install()
        page.goto(base)
        yield page
    finally:
        context.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def _copy(store: str, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copyfile(store, copy)
    return copy


def test_the_dashboard_reloads_itself_when_a_sync_has_written(browser: Browser, store: str, tmp_path: Path) -> None:
    """The page is live: a sync that finishes while it is open (from cron or `serve --sync-every`) reloads it, with
    its filters kept; while someone is typing a filter it only offers a Reload link, so what they typed stays."""
    copy = _copy(store, tmp_path, "live.duckdb")
    with _live_page(browser, copy) as page:
        page.goto(page.url + "?model=")
        assert f"every {LIVE_SECONDS} s" in page.locator("#live-note").inner_text()
        page.wait_for_load_state("networkidle")  # the first look at /healthz: what the page was drawn from
        page.evaluate("window.drawn = 'before'")
        page.clock.run_for((LIVE_SECONDS + 1) * 1000)
        assert page.evaluate("window.drawn") == "before"  # nothing synced: no reload

        _a_sync_writes(str(copy), int(time.time()) + 60)
        with page.expect_navigation():
            page.clock.run_for((LIVE_SECONDS + 1) * 1000)
        assert page.evaluate("window.drawn === undefined")
        assert "model=" in urlsplit(page.url).query

        page.wait_for_load_state("networkidle")
        page.fill("#filter-since", "7d")  # someone is changing a filter
        _a_sync_writes(str(copy), int(time.time()) + 120)
        page.evaluate("window.drawn = 'typing'")
        page.clock.run_for((LIVE_SECONDS + 1) * 1000)
        page.locator("#live-reload").wait_for()
        assert page.evaluate("window.drawn") == "typing"
        assert page.locator("#filter-since").input_value() == "7d"
        with page.expect_navigation():
            page.click("#live-reload")


def test_a_page_opened_in_a_background_tab_reloads_for_a_sync_that_ended_before_it_was_seen(
    browser: Browser, store: str, tmp_path: Path
) -> None:
    """A page opened in a background tab asks nothing while hidden; it took the last sync from its first answer, so
    a sync that ended before the tab was brought forward was what it had been "drawn" from, and it never reloaded.
    It now compares with the last sync it was drawn from, which the page carries."""
    copy = _copy(store, tmp_path, "background.duckdb")
    with _live_page(browser, copy, hidden=True) as page:
        page.evaluate("window.drawn = 'before'")
        page.clock.run_for((LIVE_SECONDS + 1) * 1000)  # hidden: it asks nothing
        _a_sync_writes(str(copy), int(time.time()) + 60)
        with page.expect_navigation():
            page.evaluate("window.hiddenTab = false; document.dispatchEvent(new Event('visibilitychange'))")
        assert page.evaluate("window.drawn === undefined")


def _a_sync_marks(store: str, at: int, status: str) -> None:
    """A sync of this process marks the store's first stream ``status`` (``running`` at its start, ``ok`` at its
    end), with its start time ``at`` both times, as a sync does."""
    for _ in range(100):
        try:
            with open_store(store, brief="test: a sync runs") as db:
                state = db.stream_states()[0]
                if status == "running":
                    db.begin_run(f"run-{at}", at=at, command="sync", owner=this_process())
                db.mark_streams([StreamMark(state.org, state.stream, status)], run_id=f"run-{at}", at=at)
                return
        except StoreError:
            time.sleep(0.1)
    raise AssertionError("the served store stayed locked")


def test_a_page_drawn_during_a_sync_reloads_when_it_has_ended_even_unseen(
    browser: Browser, store: str, tmp_path: Path
) -> None:
    """A sync keeps its start time to its end, so a page drawn while it ran and first asking once it had ended (a
    background tab, or a quick sync) saw the same last sync and nothing running, and stayed half-drawn; the page now
    carries that a sync was writing when it was drawn."""
    copy = _copy(store, tmp_path, "during.duckdb")
    at = int(time.time()) + 60
    _a_sync_marks(str(copy), at, "running")
    with _live_page(browser, copy, hidden=True) as page:
        page.evaluate("window.drawn = 'during'")
        _a_sync_marks(str(copy), at, "ok")
        with page.expect_navigation():
            page.evaluate("window.hiddenTab = false; document.dispatchEvent(new Event('visibilitychange'))")
        assert page.evaluate("window.drawn === undefined")
