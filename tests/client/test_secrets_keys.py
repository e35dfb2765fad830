"""Malformed admin keys: surrounding whitespace is stripped where the key is resolved; inner whitespace, control and
non-ASCII characters are refused with one line that shows only the prefix; masking does not need a well-formed key."""

from __future__ import annotations

import logging
import string
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usageledger import Client
from usageledger._secrets import mask_keys, normalize_key, redact, redact_url, redact_url_password
from usageledger.config import OrgConfig
from usageledger.errors import ConfigError
from usageledger.store import open_store

from fixtures.emulator import EMULATOR_NOW
from fixtures.leaks import NOW_ISO, canary_key, run_cli

MALFORMED = {"space": " ", "tab": "\t", "non-ASCII": "é"}


def test_a_key_with_surrounding_whitespace_is_stripped_where_it_is_resolved(emulator_url: str) -> None:
    """A key pasted as $'sk-admin-…\\n' (or with spaces around it) works in the library and in a config org."""
    key = canary_key()
    with Client(f"  {key}\n", emulator_url, clock=lambda: EMULATOR_NOW) as client:
        assert list(client.query("costs", start_time=EMULATOR_NOW - 3 * 86400).rows())
    assert OrgConfig("main").resolve_key({"OPENAI_ADMIN_KEY": key + "\r\n"}) == key


@pytest.mark.parametrize("where", ["sync", "query"])
def test_the_cli_syncs_and_queries_with_a_key_ending_in_a_newline(
    tmp_path: Path, emulator_url: str, where: str
) -> None:
    """OPENAI_ADMIN_KEY=$'sk-admin-…\\n' syncs and queries the emulator, and the key shows nowhere."""
    key = canary_key()
    if where == "sync":
        args = ("sync", "--base-url", emulator_url, "--now", NOW_ISO, "--since", "3d", "-e", "costs")
        done = run_cli(key + "\n", *args, "--store", str(tmp_path / "s.duckdb"))
    else:
        done = run_cli(
            key + "\n", "query", "costs", "--start", str(EMULATOR_NOW - 3 * 86400), "--base-url", emulator_url
        )
    assert done.returncode == 0, done.stderr
    assert key not in done.stdout + done.stderr and "SECRETCANARY" not in done.stdout + done.stderr


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("command", ["sync", "query"])
def test_a_key_with_an_inner_bad_character_fails_in_one_line_with_only_its_prefix(
    tmp_path: Path, emulator_url: str, name: str, command: str
) -> None:
    """Inner space, tab or non-ASCII: exit 1, one line naming OPENAI_ADMIN_KEY and sk-admin-…, no traceback, no key."""
    key = canary_key()
    bad = key[:15] + MALFORMED[name] + key[15:]
    if command == "sync":
        args: tuple[str, ...] = ("sync", "--base-url", emulator_url, "--since", "3d", "-e", "costs")
        args += ("--store", str(tmp_path / "s.duckdb"))
    else:
        args = ("query", "costs", "--start", str(EMULATOR_NOW - 3 * 86400), "--base-url", emulator_url)
    done = run_cli(bad, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "OPENAI_ADMIN_KEY" in lines[0] and "sk-admin-…" in lines[0] and "Traceback" not in done.stderr
    assert "SECRETCANARY" not in done.stdout + done.stderr


@pytest.mark.parametrize("name", list(MALFORMED))
def test_normalize_key_names_the_source_and_shows_the_prefix_only(name: str) -> None:
    """The library refuses the key at Client() with a message naming api_key= and no part of the key's body."""
    key = canary_key()
    bad = key[:15] + MALFORMED[name] + key[15:]
    with pytest.raises(ConfigError) as info:
        Client(bad, "http://127.0.0.1:9/v1")
    text = str(info.value)
    assert "api_key=" in text and "sk-admin-…" in text and "SECRETCANARY" not in text and "\n" not in text
    assert normalize_key(f"\t{key} \n", "X") == key


def test_masking_works_on_malformed_keys_raw_and_repr_escaped() -> None:
    """A key with a newline, tab or é inside or after it is masked, also in its repr form (b'Bearer sk-admin-…\\n')."""
    key = canary_key()
    for bad in (key + "\n", key[:15] + "\t" + key[15:], key[:15] + "é" + key[15:]):
        for shown in (f"Illegal header value {('Bearer ' + bad).encode('utf-8')!r}", repr(bad), f"x {bad} y"):
            assert "CANARY" not in redact(shown, bad), shown
    assert "CANARY" not in mask_keys(repr(key[:20] + "é" + key[20:]))
    assert "CANARY" not in mask_keys(repr(key[:20] + "\\xe9" + key[20:]))


@pytest.mark.parametrize(
    "name",
    ["task-automation-prod", "risk-assessment-team", "desk-admin-tools", "ft:gpt-4o-mini:acme:disk-analyzer1:x"],
)
def test_a_name_with_sk_inside_a_word_is_shown_whole(name: str) -> None:
    """``sk-`` inside a word is a name's (a project ``task-automation-prod``): masking it showed the user's own ID as
    ``task-…`` in the warning that quoted it."""
    assert mask_keys(f"warning: --project {name} appears in no row") == f"warning: --project {name} appears in no row"


def test_a_key_glued_to_a_word_or_an_escape_is_still_masked() -> None:
    """A key after a stray letter (``ssk-admin-…``), an underscore or a ``repr`` escape is known by its random body."""
    key = canary_key()
    for glued in ("s" + key, "x1" + key, "_" + key, repr("\n" + key), repr("\x0b" + key), repr("\u00a0" + key)):
        shown = mask_keys(f"error: {glued} is malformed")
        assert "CANARY" not in shown and "sk-admin-…" in shown, shown


def test_redact_url_shows_scheme_and_host_only() -> None:
    """A Slack-style webhook URL keeps its host and port; path, query, user and password are gone."""
    url = "https://user:pw@hooks.example.com:8443/services/T000/B000/XXXXSECRET?token=abc"
    assert redact_url(url) == "https://hooks.example.com:8443"
    assert redact_url("not a url") == "<webhook URL>"


def test_the_cli_log_handler_masks_keys_in_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    """A key-shaped value logged as an argument (even with a newline in it) is cut to its prefix by the CLI handler."""
    from usageledger.cli._app import setup_logging

    key = canary_key()
    for fmt in ("text", "json"):
        setup_logging(2, fmt)
        logging.getLogger("usageledger.test").warning("header %r refused", f"Bearer {key}\n")
        err = capsys.readouterr().err
        assert "sk-admin-" in err and "CANARY" not in err, err
    logging.getLogger("usageledger").handlers[:] = []


def test_doctor_blames_the_key_not_the_base_url_for_an_inner_space(emulator_url: str, tmp_path: Path) -> None:
    """doctor fails the `key` check with the one-line reason and prefix only; the base URL check still passes."""
    from usageledger.doctor import diagnose

    key = canary_key()
    env = {"OPENAI_ADMIN_KEY": key[:15] + " " + key[15:]}
    found = diagnose(base_url=emulator_url, environ=env, store=str(tmp_path / "s.duckdb"), clock=lambda: EMULATOR_NOW)
    assert found.by_check("key").status == "fail" and "whitespace" in found.by_check("key").finding
    assert found.by_check("base URL").status == "ok", found.by_check("base URL")
    assert "CANARY" not in repr(found)
    env = {"OPENAI_ADMIN_KEY": key + "\n"}
    store = str(tmp_path / "s.duckdb")
    assert diagnose(base_url=emulator_url, environ=env, store=store, clock=lambda: EMULATOR_NOW).ok


def test_the_seed_face_names_access_token_for_a_malformed_key() -> None:
    """UsageApi(access_token=...) with a tab inside names access_token=, not the Client's api_key=."""
    from usageledger import UsageApi

    key = canary_key()
    with pytest.raises(ConfigError, match="access_token=") as info:
        UsageApi(access_token=key[:15] + "\t" + key[15:], base_url="http://127.0.0.1:9/v1")
    assert "CANARY" not in str(info.value)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_cli_log_handler_masks_tracebacks_stacks_and_extras(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A key inside an exception's text, its traceback, a logged stack, or an extra field is cut to its prefix."""
    from usageledger.cli._app import setup_logging

    key = canary_key()
    setup_logging(2, fmt)
    log = logging.getLogger("usageledger.test")
    try:
        try:
            raise ValueError(f"header {('Bearer ' + key + chr(10)).encode()!r} refused")
        except ValueError as inner:
            raise RuntimeError(f"while sending {key}") from inner
    except RuntimeError:
        log.exception("request failed", extra={"header": f"Bearer {key}\t", "raw": [key]}, stack_info=True)
    log.warning("mapping %(k)s", {"k": key})
    logging.getLogger("usageledger").handlers[:] = []
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError" in err and "ValueError" in err and "Stack" in err, err
    assert "CANARY" not in err, err


def test_a_config_with_any_api_key_line_is_refused_for_its_mode_by_doctor_and_the_loader(tmp_path: Path) -> None:
    """`api_key = "..."` that is not key-shaped still makes a 0640 file fail doctor's check and the loader: one rule."""
    from usageledger.config import load_config
    from usageledger.doctor import diagnose

    config = tmp_path / "usageledger.toml"
    config.write_text('[[orgs]]\nname = "acme"\napi_key = "short"\n')
    config.chmod(0o640)
    dead = "http://127.0.0.1:9/v1"
    found = diagnose(config_path=config, environ={}, store=str(tmp_path / "s.duckdb"), base_url=dead)
    check = found.by_check("config permissions")
    assert check.status == "fail" and "its group can read it" in check.finding and "chmod 600" in (check.fix or "")
    with pytest.raises(ConfigError, match=r"its group can read it \(mode 0640\); run: chmod 600"):
        load_config(config)
    config.chmod(0o600)
    private = diagnose(config_path=config, environ={}, store=str(tmp_path / "s.duckdb"), base_url=dead)
    assert private.by_check("config permissions").status == "ok"


def test_every_cli_error_line_is_masked_whatever_its_source(tmp_path: Path) -> None:
    """A path with a pasted key in it prints only the prefix, and no folder is made named by the key: `init` makes a
    missing folder (`_paths.make_folder`), and would have put the key in a folder's name."""
    key = canary_key()
    store = tmp_path / "s.duckdb"
    open_store(str(store)).close()
    done = run_cli("", "init", "--path", str(tmp_path / key / "u.toml"), "--store", str(store))
    assert done.returncode == 1 and "sk-admin-…" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "CANARY" not in done.stdout + done.stderr
    assert "a folder to make is named by an API key" in done.stderr, done.stderr
    assert "CANARY" not in " ".join(str(p) for p in tmp_path.rglob("*"))


def test_no_output_file_is_named_by_a_pasted_key(tmp_path: Path) -> None:
    """`export -o "$OPENAI_ADMIN_KEY.csv"` (the key pasted where the file name goes) wrote a file named by the key,
    in every listing of its folder, while the command's own line showed it masked. Every output file goes through
    one rule (`_paths.overwrite_refusal`), which refuses it as bad input, the key shown by its prefix."""
    key = canary_key()
    store = tmp_path / "s.duckdb"
    open_store(str(store)).close()
    for argv in (
        ["export", "--store", str(store), "-e", "costs", "-o", str(tmp_path / f"{key}.csv")],
        ["export", "--store", str(store), "-f", "focus", "-o", str(tmp_path / f"{key}.csv")],
        ["export", "--store", str(store), "-e", "costs", "-o", str(tmp_path / "out" / key / "c.csv")],
        ["report", "--store", str(store), "--html", str(tmp_path / f"{key}.html")],
    ):
        done = run_cli("", *argv)
        assert done.returncode == 2, done.stderr
        assert "is named by an API key" in done.stderr and "sk-admin-…" in done.stderr, done.stderr
        assert "CANARY" not in done.stdout + done.stderr
    assert "CANARY" not in " ".join(str(p) for p in tmp_path.rglob("*"))


@pytest.mark.postgres
def test_a_store_password_shows_nowhere(tmp_path: Path, pg_url: str, emulator_url: str) -> None:
    """A PostgreSQL store URL with a password: init, sync, status and a failed connection print it only as ***."""
    secret = "PWCANARY" + "q" * 8
    url = pg_url.replace("@", f":{secret}@", 1)  # postgresql://user:PASSWORD@127.0.0.1:PORT/db
    assert f":{secret}@" in url
    key = canary_key()
    runs = {
        "init": run_cli(key, "init", "--path", str(tmp_path / "u.toml"), "--store", url),
        "sync": run_cli(key, "sync", "--store", url, "--base-url", emulator_url, "--now", NOW_ISO, "--since", "2d"),
        "status": run_cli(key, "status", "--store", url),
        "dead": run_cli(key, "status", "--store", url.rsplit("@", 1)[0] + "@127.0.0.1:9/x"),
    }
    assert [runs[n].returncode for n in ("init", "sync", "status")] == [0, 0, 0], runs
    assert ":***@" in runs["init"].stdout and ":***@" in runs["status"].stdout, runs["status"].stdout
    assert runs["dead"].returncode == 1 and "Traceback" not in runs["dead"].stderr
    text = "".join(r.stdout + r.stderr for r in runs.values())
    assert secret not in text and "PWCANARY" not in text, text


def test_mask_keys_hides_a_url_password_in_any_message() -> None:
    """`scheme://user:password@host` in any text becomes `scheme://user:***@host`; a URL without one is kept."""
    text = "cannot connect to postgresql://bob:s3cr3t@db:5432/x; see postgresql://bob@db/x or https://h.example/a:b@c"
    assert mask_keys(text) == (
        "cannot connect to postgresql://bob:***@db:5432/x; see postgresql://bob@db/x or https://h.example/a:b@c"
    )


@pytest.mark.parametrize("unit", ["p", "p1", "ask-", "xsk-admin-", "a:", "x:/", "http://"])
def test_mask_keys_reads_a_long_word_in_linear_time_and_still_masks_in_it(unit: str) -> None:
    """A 60,000-character path of one letter, echoed in the dashboard's 404, held its event loop for minutes: the
    URL password's scheme was scanned from every letter of the word, and the key's run of 16 letters and digits
    after every `sk-` inside it, to its end. A 32,000-character word now takes milliseconds (a second is a wide
    margin on a busy machine: it took 7 s), and what it hides is still masked."""
    word = unit * (32_000 // len(unit))
    started = time.perf_counter()
    assert mask_keys(f"path: /{word} is not a route") == f"path: /{word} is not a route"
    assert time.perf_counter() - started < 1.0
    key = canary_key()
    for text, hidden in (
        (f"{word} postgresql://u:PWCANARY@db/x", "PWCANARY"),
        (f"{word}1postgresql://u:PWCANARY@db/x", "PWCANARY"),
        (f"{word} {key}", "SECRETCANARY"),
        (f"{word}{key}", "SECRETCANARY"),
    ):
        assert hidden not in mask_keys(text)


@pytest.mark.parametrize("password", ["p@ss", "p/ss", "a@b/c@d"])
def test_a_password_holding_an_unencoded_at_or_slash_is_masked_whole(password: str) -> None:
    """`postgresql://u:p@ss@host` showed `ss` (the mask stopped at the first `@`) and `u:p/ss@host` was not masked at
    all; the mask now runs to the word's last `@`."""
    text = f"cannot connect to postgresql://u:{password}@db:5432/x (timeout)"
    assert mask_keys(text) == "cannot connect to postgresql://u:***@db:5432/x (timeout)"
    assert "ss" not in redact_url_password(f"postgresql://u:{password}@db/x").replace("postgresql", "")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql:/u:PWCANARY@db/x", "postgresql:/u:***@db/x"),
        ("postgresql:u:PWCANARY@db/x", "postgresql:u:***@db/x"),
        ("postgresql//u:PWCANARY@db/x", "postgresql//u:***@db/x"),
        ("postgres ql://u:PWCANARY@db/x", "postgres ql://u:***@db/x"),
    ],
)
def test_a_password_in_a_mistyped_url_is_masked(text: str, shown: str) -> None:
    """`postgresql:/u:pw@host` (a slash or the colon missing) was quoted whole by the store's refusal: a URL spelled
    wrong holds the same password, so the mask takes any of `scheme:`, `scheme:/`, `scheme//` before the user."""
    assert mask_keys(f"unsupported store {text}: refused") == f"unsupported store {shown}: refused"
    assert redact_url_password(text) == shown


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ('"sk-admin-QUOTEDCANARY1"', "(sk-admin-…) has quotes around it; set the key without them"),
        ("'sk-admin-QUOTEDCANARY1'", "(sk-admin-…) has quotes around it; set the key without them"),
        ("OPENAI_ADMIN_KEY=sk-admin-QUOTEDCANARY1", "(…) has text before its sk- prefix; set the key alone"),
    ],
)
def test_a_key_wrapped_in_quotes_or_text_is_refused_naming_the_slip(raw: str, said: str) -> None:
    """An env file (docker --env-file) keeps `"sk-admin-…"` with its quotes, and a pasted `NAME=sk-admin-…` keeps the
    name: the key was sent as it was and the API refused it (401), or doctor said "does not look like an OpenAI
    key". The one key reader now names the slip, never showing the key."""
    with pytest.raises(ConfigError) as caught:
        normalize_key(raw, "OPENAI_ADMIN_KEY")
    assert str(caught.value) == f"the admin key from OPENAI_ADMIN_KEY {said}"


def test_mask_keys_and_redact_url_password_hide_a_password_in_the_query() -> None:
    """libpq reads `?password=` (and `sslpassword=`) as it reads `user:password@`: both are shown as ***."""
    url = "postgresql://bob@db:5432/x?sslmode=require&password=s3cr3t&SSLPASSWORD=k3y#f"
    shown = "postgresql://bob@db:5432/x?sslmode=require&password=***&SSLPASSWORD=***#f"
    assert mask_keys(f"cannot connect to {url}: refused") == f"cannot connect to {shown}: refused"
    assert redact_url_password(url) == shown
    assert redact_url_password("postgresql://bob:pw@db/x?password=pw") == "postgresql://bob:***@db/x?password=***"
    # the URL alone: a password ending in a stop or a colon is masked whole, the mark with it
    assert redact_url_password("postgresql://bob@db/x?password=pw.:") == "postgresql://bob@db/x?password=***"


@pytest.mark.postgres
def test_a_store_password_in_the_url_query_shows_nowhere(tmp_path: Path, pg_url: str, emulator_url: str) -> None:
    """`postgresql://user@host/db?password=…`: sync, status, doctor and a failed connection never print it."""
    secret = "PWCANARY" + "z" * 8
    url = f"{pg_url}?password={secret}"
    key = canary_key()
    runs = {
        "sync": run_cli(key, "sync", "--store", url, "--base-url", emulator_url, "--now", NOW_ISO, "--since", "2d"),
        "status": run_cli(key, "status", "--store", url),
        "doctor": run_cli(key, "doctor", "--store", url, "--base-url", emulator_url),
        "dead": run_cli(key, "status", "--store", url.replace(pg_url.rsplit("@", 1)[1], "127.0.0.1:9/x")),
    }
    assert [runs[n].returncode for n in ("sync", "status")] == [0, 0], runs
    assert "password=***" in runs["status"].stdout, runs["status"].stdout
    assert runs["dead"].returncode == 1 and "Traceback" not in runs["dead"].stderr, runs["dead"].stderr
    text = "".join(r.stdout + r.stderr for r in runs.values())
    assert secret not in text and "PWCANARY" not in text, text


def test_a_url_given_as_the_key_is_refused_before_it_goes_out_as_one(emulator_url: str) -> None:
    """`Client("http://127.0.0.1:8787/v1")` took the URL as the key, sent it as the Bearer token to the default host
    and got a 401 blaming the key; the same from OPENAI_ADMIN_KEY. It is refused where every key is read, naming the
    source and where the URL belongs, without showing it."""
    from usageledger import AsyncClient, UsageApi

    for make, source in ((Client, "api_key="), (AsyncClient, "api_key="), (UsageApi, "access_token=")):
        with pytest.raises(ConfigError, match=rf"^the admin key from {source} is a URL; give the admin key") as caught:
            make(emulator_url)
        assert "127.0.0.1" not in str(caught.value) and "--base-url" in str(caught.value)
    done = run_cli(emulator_url, "query", "costs", "--start", "2d", "--base-url", emulator_url)
    assert done.returncode == 1 and done.stdout == "", done
    assert done.stderr.strip() == (
        "error: the admin key from OPENAI_ADMIN_KEY is a URL; give the admin key (sk-admin-…) there, and the URL as"
        " the base URL (base_url=, --base-url or OPENAI_BASE_URL)"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("'https://hooks.slack.com/services/T0/B0/SECRETPATH' is not", "'https://hooks.slack.com/…' is not"),
        ("at https://discord.com/api/webhooks/123/abcSECRET.", "at https://discord.com/…"),
        ("https://acme.webhook.office.com/webhookb2/x@y/IncomingWebhook/SECRET", "https://acme.webhook.office.com/…"),
        ("POST https://h.example/hook?token=SECRET&v=1 failed", "POST https://h.example/hook?token=…&v=1 failed"),
        ("https://h.example/signed?sv=1&sig=SECRET", "https://h.example/signed?sv=1&sig=…"),
        # what is no credential stays: an API path and its query, a Discord page that is not a webhook
        ("http://127.0.0.1:8787/v1/organization/costs?start_time=1", None),
        ("https://discord.com/channels/1/2", None),
    ],
)
def test_mask_keys_hides_a_webhook_credential_in_any_message(text: str, shown: str | None) -> None:
    assert mask_keys(text) == (text if shown is None else shown)
    assert "SECRET" not in mask_keys(text)


def test_a_webhook_url_in_the_wrong_config_key_is_never_echoed(tmp_path: Path) -> None:
    """A Slack webhook pasted as `[alerts] daily_budget` is refused naming the key, its URL cut to the host."""
    config = tmp_path / "c.toml"
    config.write_text('[alerts]\ndaily_budget = "https://hooks.slack.com/services/T0/B0/SECRETPATH"\n')
    done = run_cli("", "check", "--config", str(config), "--store", str(tmp_path / "s.duckdb"))
    assert done.returncode == 1 and "alerts.daily_budget" in done.stderr, done.stderr
    assert "hooks.slack.com/…" in done.stderr and "SECRETPATH" not in done.stdout + done.stderr


_QUERY_CHARS = string.ascii_letters + string.digits + '-._~!$()+,;=:@/?%[]"<>{}'
"""What a URL's query value may hold as written (``&``, ``#``, a space and a leading ``'`` end or quote it; a
``*`` is left out, the mask being ``***``)."""
_AFTER = ["", ": connection refused", '": bad', "&sslmode=require", " (timeout)", "', x", ").", "#f", ".\nnext", ":"]


@given(
    before=st.sampled_from(["", "cannot connect to ", 'url "', "(", "FATAL: "]),
    password=st.text(_QUERY_CHARS, min_size=1, max_size=30),
    after=st.sampled_from(_AFTER),
    tail=st.text(string.ascii_lowercase + " ", max_size=20).map(lambda t: f" {t}" if t else t),
)
def test_a_query_password_is_masked_and_the_text_around_it_kept_exact(
    before: str, password: str, after: str, tail: str
) -> None:
    """A `?password=` in a PostgreSQL URL inside an error lost the `:` after it (`?password=*** connection
    refused`): the value ran to the next space. What closes the sentence is kept; the password never shows."""
    url = "postgresql://bob@db:5432/ledger?password="
    masked = mask_keys(f"{before}{url}{password}{after}{tail}")
    if password not in before + url + after + tail:
        assert password not in masked
    if not password.endswith(tuple(":;,.)]}>\"'")):  # a closing mark ending the value may be the sentence's
        assert masked == f"{before}{url}***{after}{tail}"
