"""The reading commands (report, check, forecast, credit, statement, ...) used in a hurry: the cases that still went
wrong through the real CLI, one test each."""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from usageledger.cli import app
from usageledger.report.names import resolve_names
from usageledger.report.teams import UNASSIGNED, project_teams
from usageledger.store import open_store


def _teams(store: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``({project_id: team}, {project_id: name})`` of the store's directory, as ``report --by team`` groups them."""
    with open_store(str(store), migrate=False, read_only=True) as opened:
        return dict(project_teams(opened)), dict(resolve_names(opened, distinct=False).projects)


def test_a_project_outside_the_team_is_refused_not_reported_as_nothing_spent(demo_command_store: Path) -> None:
    """`report --team Platform --project <a Research project>` printed "Spend $0.00 (no spend in this period or the
    previous 30 days)" for a project that spent hundreds: the two filters disagree, and now say so, naming both."""
    teams, _ = _teams(demo_command_store)
    project, team = next(iter(sorted(teams.items())))
    other = next(t for t in sorted(set(teams.values())) if t != team)
    store = ["--store", str(demo_command_store)]
    done = CliRunner().invoke(app, ["report", *store, "--team", other, "--project", project])
    assert done.exit_code == 2, done.output
    assert done.stderr == (
        f"error: --project: {project} is in team {team}, not in team {other}, so the report would hold nothing; "
        "leave out --team or --project (report --by team lists each team's projects)\n"
    )
    assert done.stdout == ""
    unassigned = CliRunner().invoke(app, ["report", *store, "--team", UNASSIGNED, "--project", project])
    assert unassigned.exit_code == 2 and f"is in team {team}, not in team {UNASSIGNED}" in unassigned.stderr
    agreed = CliRunner().invoke(app, ["report", *store, "--team", team, "--project", project, "-f", "json"])
    assert agreed.exit_code == 0, agreed.output
    assert json.loads(agreed.stdout)["totals"]["spend"] != "0"


def test_a_project_given_by_its_name_reads_that_project(demo_command_store: Path) -> None:
    """`report --project 'Search Assistant'` (the name every table shows) warned "give that ID instead" and then
    reported $0.00, as `check` watched nothing and `forecast` refused it: the name of one project (case and blanks
    aside) now reads that project, in every command that takes --project, said once on stderr. An ID, a value
    differing from an ID only in case or a pasted blank, and a value naming nothing are as before."""
    _, names = _teams(demo_command_store)
    project, name = next(iter(sorted(names.items())))
    store = ["--store", str(demo_command_store)]
    note = f"note: --project ' {name.upper()} ' is the name of project {project}; reading that project"
    for command in (["report"], ["forecast"]):
        by_id = CliRunner().invoke(app, [*command, *store, "--project", project, "-f", "json"])
        by_name = CliRunner().invoke(app, [*command, *store, "--project", f" {name.upper()} ", "-f", "json"])
        assert by_name.exit_code == 0, by_name.output
        assert by_name.stderr.splitlines().count(note) == 1, by_name.stderr
        assert "give that ID" not in by_name.stderr and "warning: --project" not in by_name.stderr
        assert json.loads(by_name.stdout) == json.loads(by_id.stdout), command
        assert json.loads(by_name.stdout)["scope"]["project"] == project
    assert json.loads(CliRunner().invoke(app, ["report", *store, "-f", "json", "--project", name]).stdout)["totals"][
        "spend"
    ] not in ("0", "0.00")
    # check: the name's budget is the project's budget, an alert naming that project
    watched = CliRunner().invoke(app, ["check", *store, "--project", name, "--monthly-budget", "0.01", "-f", "json"])
    assert watched.exit_code == 3, watched.output
    alerts = json.loads(watched.stdout)["alerts"]
    assert any(a["kind"] == "budget" and project in json.dumps(a) for a in alerts), alerts
    for near in (f"{project} ", project.upper()):  # a pasted blank, a shifted letter
        done = CliRunner().invoke(app, ["report", *store, "--project", near])
        assert done.stderr.splitlines()[0].endswith(f"; did you mean {project}?"), done.stderr
    typo = CliRunner().invoke(app, ["report", *store, "--project", "nope"])
    assert typo.stderr.splitlines()[0] == (
        "warning: --project nope appears in no cost or usage row of this store; nor is it a project's name; check "
        "the name, or give the ID (usageledger report lists the projects)"
    )
    # `sk-` inside an ID is no key: the warning once showed `task-automation-prod` as `task-…`
    named = CliRunner().invoke(app, ["report", *store, "--project", "task-automation-prod"])
    assert named.stderr.splitlines()[0].startswith("warning: --project task-automation-prod appears in no cost")


def test_a_name_of_several_projects_is_refused_and_org_narrows_it(demo_command_store: Path, tmp_path: Path) -> None:
    """A name two projects share (here one of another org's directory) is refused in one line naming both IDs, never
    answered with one of them; `--org` narrows the names as it narrows the report, so there it names one."""
    copied = Path(shutil.copy(demo_command_store, tmp_path / "copy.duckdb"))
    with open_store(str(copied)) as opened:
        names = dict(resolve_names(opened, distinct=False).projects)
        project, name = next(iter(sorted(names.items())))
        (org,) = {o for (o,) in opened.query("SELECT org FROM directory_versions WHERE id = %s", [project])}
        opened.execute(
            "INSERT INTO directory_versions SELECT 'org-other', kind, scope, 'proj_elsewhere', name, email, status,"
            " owner_type, owner_id, record, digest, valid_from, valid_to FROM directory_versions WHERE id = %s",
            [project],
        )
    store = ["--store", str(copied)]
    for command in (["report"], ["check"], ["forecast"]):
        done = CliRunner().invoke(app, [*command, *store, "--project", name.lower()])
        assert done.exit_code == 2, done.output
        assert done.stderr == (
            f"error: --project: {name.lower()!r} is the name of 2 projects ({project}, proj_elsewhere); "
            "give the ID of one\n"
        ), done.stderr
        assert done.stdout == ""
    narrowed = CliRunner().invoke(app, ["report", *store, "--org", org, "--project", name, "-f", "json"])
    assert narrowed.exit_code == 0, narrowed.output
    assert f"is the name of project {project};" in narrowed.stderr
    assert json.loads(narrowed.stdout)["scope"]["project"] == project


def test_an_archived_projects_name_reads_it_without_the_status_the_tables_add(
    demo_command_store: Path, tmp_path: Path
) -> None:
    """Tables show an archived project as `Internal Tools (archived)`; `--project 'Internal Tools'` (its name) named
    nothing, and the shown name, read, was warned of as "did you mean <that very ID>?". Both now read the project,
    and the warning says it is the directory's project with no spend. A project whose name is exactly the value is
    still preferred to an archived one of that name."""
    copied = Path(shutil.copy(demo_command_store, tmp_path / "copy.duckdb"))
    with open_store(str(copied)) as opened:
        rows = opened.query(
            "SELECT id, name, org FROM directory_versions WHERE kind = 'project' AND status = 'archived'"
        )
        ((archived, name, org),) = {tuple(r) for r in rows}
    store = ["--store", str(copied)]
    for given in (f" {name.upper()} ", f"{name} (archived)"):
        done = CliRunner().invoke(app, ["report", *store, "--project", given, "-f", "json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["scope"]["project"] == archived, given
        lines = done.stderr.splitlines()
        assert lines[0] == f"note: --project {given!r} is the name of project {archived}; reading that project"
        assert lines[1].endswith(
            f"; it is '{name} (archived)' in the directory, a project with no spend or usage synced"
        ), lines
        assert "did you mean" not in done.stderr
    with open_store(str(copied)) as opened:  # a live project takes the archived one's name
        opened.execute(
            "INSERT INTO directory_versions SELECT org, kind, scope, 'proj_successor', name, email, 'active',"
            " owner_type, owner_id, record, digest, valid_from, valid_to FROM directory_versions WHERE id = %s",
            [archived],
        )
    for given, meant in ((name, "proj_successor"), (f"{name} (archived)", archived)):
        done = CliRunner().invoke(app, ["report", *store, "--org", org, "--project", given, "-f", "json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["scope"]["project"] == meant, given


def test_a_dash_for_an_output_file_is_refused_not_written_as_a_file_named_dash(
    demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`statement 2026-11 --csv -` (or `report --html -`), as `export -o -` prints to stdout, wrote a file named `-`
    into the working directory and said "wrote -": refused naming the flag, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    store = ["--store", str(demo_store)]
    for argv, flag, says in (
        (["statement", "2026-11", "--csv", "-"], "--csv", "a file named '-'; give a file name, such as statements.csv"),
        (["statement", "2026-11", "--html=-"], "--html", "a file named '-'; give a file name, such as statements.html"),
        (["report", "--html", "-"], "--html", "a file named '-'; give a file name, such as report.html"),
        (["report", "--png", "-"], "--png", "a folder named '-'; give a folder, such as charts"),
    ):
        done = CliRunner().invoke(app, [*argv, *store])
        assert done.exit_code == 2, done.output
        assert done.stderr == f"error: {flag}: - is not stdout here, it would be {says}\n", done.stderr
        assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # "Got unexpected extra argument(s) (--curency EUR)": the command reads `-5` as AMOUNT, so it took any
        # unknown option for a word left over
        (["2026-11-01", "500", "--curency", "EUR"], "No such option: --curency (see `usageledger credit add --help`)"),
        (["2026-11-01", "--curency=EUR", "500"], "No such option: --curency (see `usageledger credit add --help`)"),
        (["2026-11-01", "500", "--not", "x"], "No such option: --not (Possible options: --format, --note, --org)"),
        # "Got unexpected extra argument(s) (EUR)"
        (
            ["2026-11-01", "500", "EUR"],
            "AMOUNT: 'EUR' after the amount is not taken: give the amount alone, like 500.00",
        ),
        (["2026-11-01", "500", "invoice", "42"], "AMOUNT: 'invoice 42' after the amount is not taken:"),
        # still refused as an amount, not as an option
        (["2026-11-01", "-0.5"], "AMOUNT: a top-up must be more than zero, got '-0.5'"),
    ],
)
def test_a_word_credit_add_does_not_take_is_named_for_what_it_is(
    demo_store_copy: Path, args: list[str], says: str
) -> None:
    """`credit add DAY 500 --curency EUR` said "Got unexpected extra argument(s)", as if an option were a value, and
    `credit add DAY 500 EUR` did not say that a top-up takes no currency: both are one line, exit 2, nothing stored."""
    store = ["--store", str(demo_store_copy)]
    done = CliRunner().invoke(app, ["credit", "add", *args, *store])
    assert done.exit_code == 2, done.output
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and says in line, line
    listed = CliRunner().invoke(app, ["credit", "list", *store, "-f", "json"])
    assert json.loads(listed.stdout)["topups"] == []


def test_spend_by_team_says_the_filters_it_was_given(demo_command_store: Path) -> None:
    """`report --by team --team Platform --model gpt-4o` showed one team's gpt-4o spend under the bare heading
    "Spend by team <period>", and its JSON's scope said no team and no model: read later, the figures passed for the
    whole organisation's. Both now say every filter, and the heading is one line however narrow the table."""
    teams, _ = _teams(demo_command_store)
    team = sorted(set(teams.values()))[0]
    argv = ["report", "--store", str(demo_command_store), "--by", "team", "--team", team, "--model", "gpt-4o"]
    text = CliRunner().invoke(app, argv, env={"COLUMNS": "100"})
    assert text.exit_code == 0, text.output
    first = text.stdout.splitlines()[0]
    assert first.startswith("Spend by team ") and first.endswith(f"(30 days)  team {team} · model gpt-4o"), first
    doc = CliRunner().invoke(app, [*argv, "-f", "json"])
    assert json.loads(doc.stdout)["scope"] == {"org": None, "project": None, "team": team, "model": "gpt-4o"}


@pytest.mark.parametrize("command", [["report"], ["statement", "2026-11"]])
def test_currency_usd_without_rates_is_told_it_needs_none(command: list[str], demo_store: Path) -> None:
    """`report --currency USD` asked for a rate table (`--fx rates.csv`) it could never need: the costs are in USD.
    With --fx it said so; without, it now says so too, and a code that is no code (EURO, or EUT, no ISO 4217 code:
    every converted figure was labelled with it) is named first."""
    for currency, said in (
        ("usd", "--currency: costs are already in USD; leave out --currency"),
        ("EURO", "--currency: 'EURO' is not a three-letter currency code; write EUR, GBP, ..."),
        ("EUR", "--fx: --currency needs a per-day rate table: --fx rates.csv with lines date,rate"),
        ("EUT", "--currency: 'EUT' is not an ISO 4217 currency code; did you mean EUR?"),  # a typo labelled every sum
        ("xyz", "--currency: 'xyz' is not an ISO 4217 currency code; write EUR, GBP, JPY, ..."),
    ):
        done = CliRunner().invoke(app, [*command, "--store", str(demo_store), "--currency", currency])
        assert done.exit_code == 2, done.output
        assert done.stderr == f"error: {said}\n" and done.stdout == ""


def test_a_top_up_recorded_twice_is_said(demo_store_copy: Path) -> None:
    """`credit add 2026-11-02 500` run twice (a retried script, the shell's history) recorded $1,000 of credit without
    a word, and the balance hid a low-credit alert. The second is still recorded (two alike top-ups can be real), with
    a warning naming the first and how to remove the second; a different note or day is no repeat."""
    store = ["--store", str(demo_store_copy)]
    first = CliRunner().invoke(app, ["credit", "add", "2026-11-02", "500", *store])
    assert first.exit_code == 0 and first.stderr == "", first.output
    again = CliRunner().invoke(app, ["credit", "add", "2026-11-02", "500.00", *store, "-f", "json"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)["id"]
    assert again.stderr == (
        "warning: a top-up of $500.00 on 2026-11-02 for org-demo was already recorded (ID 1); if this one repeats "
        f"it, remove it: usageledger credit remove {second}\n"
    )
    for other in (["2026-11-03", "500"], ["2026-11-02", "500", "--note", "INV-2"], ["2026-11-02", "50"]):
        done = CliRunner().invoke(app, ["credit", "add", *other, *store])
        assert done.exit_code == 0 and done.stderr == "", done.output


def test_close_reopen_with_allow_partial_is_refused_before_it_forgets_the_figures(demo_store_copy: Path) -> None:
    """`close --reopen --allow-partial 2026-10` (read as "close it again, partial as it is") reopened the month,
    forgetting its closed figures, and ignored --allow-partial. The pair is refused and the month stays closed."""
    store = ["--store", str(demo_store_copy), "--now", "2026-12-02"]
    closed = CliRunner().invoke(app, ["close", "2026-10", *store, "--allow-partial"])
    assert closed.exit_code == 0, closed.output
    done = CliRunner().invoke(app, ["close", "2026-10", *store, "--reopen", "--allow-partial"])
    assert done.exit_code == 2, done.output
    assert done.stderr == (
        "error: --allow-partial: --reopen only reopens the month, it closes nothing: run close --reopen first, then "
        "close --allow-partial\n"
    )
    again = CliRunner().invoke(app, ["close", "2026-10", *store, "--allow-partial"])
    assert again.exit_code == 2 and "2026-10 is already closed for org-demo" in again.stderr, again.output


@pytest.mark.parametrize("org", [[], ["--org", "acme"]])
def test_a_statement_of_a_store_that_holds_nothing_says_to_sync(org: list[str], tmp_path: Path) -> None:
    """`statement 2026-11` on a store `init` made and nothing synced printed an empty table and "The 0 statements add
    up to $0.00, the month's costs in the store to the cent (yes ...)": a showback of nothing, exit 0. It now says
    to sync first, as `forecast` and `close` do."""
    store = tmp_path / "empty.duckdb"
    with open_store(str(store)):
        pass
    done = CliRunner().invoke(app, ["statement", "2026-11", "--store", str(store), *org])
    assert done.exit_code == 1, done.output
    assert done.stderr == "error: the store holds no costs yet to make statements of: run `usageledger sync` first\n"
    assert done.stdout == ""


@pytest.mark.parametrize("flag", ["--date", "--anomaly-date"])
def test_check_refuses_a_day_before_the_stores_costs_instead_of_an_all_clear(flag: str, demo_store: Path) -> None:
    """`check --date 2026-01-01 --daily-budget 1` read $0.00 spent that day, before the store's first costs, and said
    "OK: no alerts", exit 0: an all-clear for a day the store holds nothing of. Refused naming the flag and the day
    the costs start, as a day after today is."""
    with open_store(str(demo_store), migrate=False, read_only=True) as opened:
        ((first,),) = opened.query("SELECT MIN(bucket_start) FROM costs_daily")
    argv = ["check", "--store", str(demo_store), "--daily-budget", "1", flag, "2026-01-01"]
    done = CliRunner().invoke(app, argv)
    assert done.exit_code == 2, done.output
    assert done.stderr == (
        f"error: {flag}: 2026-01-01 is before the store's costs start on {first:%Y-%m-%d}, so it holds nothing to "
        f"check: give {first:%Y-%m-%d} or a later day, or sync that day first (usageledger sync --since 2026-01-01)\n"
    )
    assert "no alerts" not in done.stdout


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["forecast", "2026-12"], "; for --month, pass --month 2026-12"),  # statement and close take it bare
        (["report", "30d"], "; for --since, pass --since 30d"),
        (["changes", "7d"], "; for --since, pass --since 7d"),
        (["check", "2026-11-20"], "; for --date, pass --date 2026-11-20"),
        (["report", "json"], "; for --format, pass --format json"),
        (["statement", "2026-11", "project"], "; for --by, pass --by project"),
        (["close", "2026-10", "2026-11"], "; MONTH takes one value: run the command once for each"),
        (["credit", "remove", "1", "2"], "; ID takes one value: run the command once for each"),
        (["report", "--since", "30d", "7d"], ""),  # --since is given: nothing to guess
    ],
)
def test_a_word_left_over_says_where_it_belongs(argv: list[str], hint: str, demo_store: Path) -> None:
    """`forecast 2026-12` (as `statement 2026-12` is typed), `report 30d`, `close 2026-10 2026-11` said only "Got
    unexpected extra argument(s) (...)": the option the word was meant for, or that the argument takes one value, is
    now said with it."""
    done = CliRunner().invoke(app, [*argv, "--store", str(demo_store)])
    assert done.exit_code == 2, done.output
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: Got unexpected extra argument(s) ({argv[-1]}){hint} (see `usageledger "), line


def test_a_store_path_given_bare_is_pointed_at_store(demo_store: Path) -> None:
    """`status u.duckdb` said "Got unexpected extra argument(s) (u.duckdb)"; it now says to pass it with --store."""
    done = CliRunner().invoke(app, ["status", str(demo_store)])
    assert done.exit_code == 2, done.output
    assert f"; for --store, pass --store {demo_store} (see `usageledger status --help`)" in done.stderr


def test_an_output_under_a_file_is_refused_naming_the_flag_before_anything_prints(
    demo_store: Path, tmp_path: Path
) -> None:
    """`statement 2026-11 --csv notes.txt/s.csv` printed the statements, then failed: "File exists: notes.txt; pick
    a path that does not exist yet", naming no flag (and `report --png notes.txt/charts` "Not a directory"). A file
    where a folder of the path must be is refused first, naming the flag; nothing is printed or written."""
    (tmp_path / "notes.txt").write_text("mine\n")
    store = ["--store", str(demo_store)]
    under = tmp_path / "notes.txt"
    for argv, flag, path, fix in (
        (["statement", "2026-11", "--csv"], "--csv", under / "s.csv", "give a path in a folder"),
        (["report", "--html"], "--html", under / "sub" / "r.html", "give a path in a folder"),
        (["report", "--png"], "--png", under / "charts", "give a folder"),
    ):
        done = CliRunner().invoke(app, [*argv, str(path), *store])
        assert done.exit_code == 2, done.output
        assert done.stderr == f"error: {flag}: {under} is a file, not a folder, so {path} cannot be made; {fix}\n"
        assert done.stdout == ""
    assert (tmp_path / "notes.txt").read_text() == "mine\n" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["report", "--html"], "--html"), (["statement", "2026-11", "--csv"], "--csv"), (["report", "--png"], "--png")],
)
def test_an_output_that_cannot_be_written_names_its_flag_and_its_path(
    argv: list[str], flag: str, demo_store: Path
) -> None:
    """`report --html /proc/r.html` said "No such file or directory: /proc/.r.html.c80592db067c.tmp": the name of the
    temporary file beside it, which the user never typed, and no flag. Now the flag and the path given."""
    path = "/proc/usageledger-test-output"  # a folder no file can be made in, whoever runs the test
    done = CliRunner().invoke(app, [*argv, path, "--store", str(demo_store)])
    assert done.exit_code == 1, done.output
    last = done.stderr.splitlines()[-1]  # after the warnings of the fixture's store, whose costs end days ago
    assert last.startswith(f"error: {flag}: No such file or directory: {path};"), done.stderr
    assert ".tmp" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # "Option '--org' requires an argument (see `usageledger --help`)": the root's help, which has no --org
        (["report", "--org"], "--org: no value given; write --org VALUE, or leave --org out for its default"),
        (["credit", "list", "--org"], "--org: no value given; write --org VALUE, or leave --org out for its default"),
        (["check", "--date"], "--date: no value given; write --date VALUE, or leave --date out for its default"),
        # the next option was read as the value: "Got unexpected extra argument(s) (s.duckdb); for --store, pass
        # --store s.duckdb", though --store was given
        (["report", "--org", "--store", "s.duckdb"], "--org: no value given (--store was read as its value)"),
        (["check", "--project", "--daily-budget", "5"], "--project: no value given (--daily-budget was read as"),
        (["credit", "add", "2026-11-01", "5", "--note", "-f", "json"], "--note: no value given (-f was read as its"),
    ],
)
def test_an_option_given_no_value_is_named_with_its_fix(argv: list[str], said: str) -> None:
    """An option last on the line, or followed by another option it then took for its value, is refused naming the
    option, before anything is read: never the root's help, never a word "left over" that was given right."""
    done = CliRunner().invoke(app, argv)
    assert done.exit_code == 2, done.output
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {said}"), line


@pytest.mark.parametrize(
    "argv", [["report", "--project"], ["report", "--model"], ["check", "--project"], ["forecast", "--project"]]
)
def test_a_filter_holding_a_newline_is_refused(argv: list[str], demo_store: Path) -> None:
    """`check --project $'a\\nb'` (a paste) split each of its lines, one per alert for cron, in two ("checked budget
    project a", "b: daily spend ..."), and `report` its warning: no ID or model name holds a newline, so it is
    refused, quoted back escaped."""
    done = CliRunner().invoke(app, [*argv, "a\nb", "--store", str(demo_store)])
    assert done.exit_code == 2, done.output
    assert done.stderr == f"error: {argv[1]}: 'a\\nb' holds a newline or a control character; give it on one line\n"
    assert done.stdout == ""


def test_spend_by_team_as_of_a_time_says_so(demo_command_store: Path) -> None:
    """`report --by team --as-of T` printed the figures the ledger held at T with nothing to tell them from today's:
    the whole report says "As of ..., rebuilt from the revision log" and its JSON has `as_of`; the teams' now do."""
    with open_store(str(demo_command_store), migrate=False, read_only=True) as opened:
        ((last,),) = opened.query("SELECT MAX(seen_at) FROM revisions")
    at = last.replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, at.timestamp() - time.time()))  # a time to come is refused: the store may be a second old
    argv = ["report", "--store", str(demo_command_store), "--by", "team", "--as-of", f"{at:%Y-%m-%dT%H:%M:%SZ}"]
    text = CliRunner().invoke(app, argv)
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[-1] == f"As of {at:%Y-%m-%d %H:%M:%S} UTC, rebuilt from the revision log."
    doc = json.loads(CliRunner().invoke(app, [*argv, "-f", "json"]).stdout)
    assert doc["as_of"] == f"{at:%Y-%m-%dT%H:%M:%SZ}"
    today = json.loads(CliRunner().invoke(app, [*argv[:5], "-f", "json"]).stdout)
    assert today["as_of"] is None
