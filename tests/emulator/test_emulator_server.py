"""The emulator over real HTTP: the loopback server, the OpenAI SDK, drops and clean shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from usageledger import Client, catalogue, models
from usageledger.cli import app
from usageledger.emulator import Emulator, EmulatorConfig, FaultConfig, Request, run_server
from usageledger.emulator.faults import Fault, decide
from usageledger.errors import ResponseDecodeError

from fixtures.emulator import EMULATOR_NOW

KEY = {"Authorization": "Bearer sk-admin-test-key"}


def test_server_answers_a_page(emulator_url: str) -> None:
    """The loopback server serves a decodable page under /v1 with an x-request-id."""
    r = httpx.get(
        f"{emulator_url}/organization/usage/completions", params={"start_time": EMULATOR_NOW - 86400 * 3}, headers=KEY
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"].startswith("req_")
    page = models.decode_page(r.content)
    assert len(page.data) == 4


def test_in_process_transport_matches_the_server(emulator: Emulator, emulator_url: str) -> None:
    """The in-process transport and the HTTP server return byte-identical bodies."""
    params = {"start_time": EMULATOR_NOW - 86400 * 5, "group_by": "project_id,model"}
    over_http = httpx.get(f"{emulator_url}/organization/usage/completions", params=params, headers=KEY)
    with httpx.Client(transport=emulator.transport(), base_url="http://emulator/v1", headers=KEY) as client:
        in_process = client.get("/organization/usage/completions", params=params)
    assert over_http.content == in_process.content


def _accepted_socket(port: int, peer: tuple[str, int]) -> socket.socket:
    """The server's end of a connection, found among this process's file descriptors (Linux's /proc)."""
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue  # not a socket
        try:
            tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
            if tcp and sock.getsockname()[1] == port and sock.getpeername()[:2] == peer:
                return sock
        except OSError:
            pass  # a listener, or not TCP
        sock.close()
    raise AssertionError(f"no accepted socket for {peer}")


def test_server_sends_small_bodies_without_nagle() -> None:
    """The server's connections have TCP_NODELAY: with Nagle's algorithm on, a body written after its headers
    waits for their ACK, which the client delays by 40 ms, so a kept-alive client saw small pages 40 ms late
    (a 35 KB page at 45 ms where a 120 KB one took 5 ms)."""
    emulator = Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW))
    with run_server(emulator) as url, httpx.Client(headers=KEY) as client:
        r = client.get(f"{url}/organization/usage/completions", params={"start_time": EMULATOR_NOW - 86400})
        assert r.status_code == 200
        stream = r.extensions["network_stream"]
        ours = stream.get_extra_info("socket")
        with _accepted_socket(httpx.URL(url).port or 0, ours.getsockname()[:2]) as server_side:
            assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


# --- faults -------------------------------------------------------------------------------------------------


def faulty(**rates: float) -> Emulator:
    return Emulator(EmulatorConfig(days=5, projects=1, now=EMULATOR_NOW, faults=FaultConfig(seed=3, **rates)))


def test_fault_decisions_are_seeded_and_repeat() -> None:
    """The same seed gives the same fault for the same request number; rates are honoured roughly."""
    config = FaultConfig(rate_429=0.1, rate_5xx=0.1, rate_drop=0.1, rate_truncate=0.1, seed=5, latency=0.1, jitter=0.05)
    first = [decide(config, n) for n in range(2000)]
    assert first == [decide(config, n) for n in range(2000)]
    assert first != [decide(FaultConfig(rate_429=0.1, seed=6), n) for n in range(2000)]
    kinds = Counter(f.kind for f in first)
    assert 150 < kinds["drop"] < 250 and 150 < kinds["429"] < 250
    assert 150 < kinds["500"] + kinds["503"] < 250
    assert 150 < kinds["truncate"] + kinds["malformed"] + kinds["slow"] < 250
    assert all(0.1 <= f.delay <= 0.15 for f in first)
    assert decide(FaultConfig(), 0) == Fault()


def test_fault_rates_must_be_probabilities() -> None:
    """A rate outside [0, 1] is refused."""
    with pytest.raises(ValueError, match="rate_429"):
        FaultConfig(rate_429=1.5)


def test_in_process_faults(emulator: Emulator) -> None:
    """In-process: 429 with Retry-After, 5xx, drops raise, latency goes to the injected sleep."""
    slept: list[float] = []
    url = f"/organization/costs?start_time={EMULATOR_NOW - 86400}"
    with httpx.Client(transport=faulty(rate_429=1.0).transport(), base_url="http://e/v1", headers=KEY) as client:
        r = client.get(url)
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "requests"
    with httpx.Client(transport=faulty(rate_5xx=1.0).transport(), base_url="http://e/v1", headers=KEY) as client:
        assert {client.get(url).status_code for _ in range(20)} == {500, 503}
    transport = faulty(rate_drop=1.0, latency=0.25).transport(sleep=slept.append)
    with (
        httpx.Client(transport=transport, base_url="http://e/v1", headers=KEY) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(url)
    assert slept == [0.25]


def test_faults_over_http(emulator: Emulator) -> None:
    """Over HTTP: a drop closes the socket without a response; truncated bodies end early; slow bodies arrive whole;
    a malformed answer is a gateway's 502 HTML page."""
    url = f"/organization/usage/completions?start_time={EMULATOR_NOW - 3 * 86400}"
    dropping = faulty(rate_drop=1.0)
    with (
        run_server(dropping) as base,
        httpx.Client(base_url=base, headers=KEY) as client,
        pytest.raises(httpx.RemoteProtocolError, match="without sending a response"),
    ):
        client.get(url)
    kinds: dict[str, list[int]] = {"truncate": [], "slow": [], "malformed": []}
    config = FaultConfig(seed=3, rate_truncate=1.0)
    for n in range(40):
        kinds.setdefault(decide(config, n).kind, []).append(n)
    truncating = faulty(rate_truncate=1.0)
    path, query = url.split("?")
    clean = faulty().handle(Request("GET", "/v1" + path, query, {"authorization": KEY["Authorization"]}))
    with run_server(truncating) as base, httpx.Client(base_url=base, headers=KEY) as client:
        for n in range(max(kinds["truncate"][0], kinds["slow"][0], kinds["malformed"][0]) + 1):
            kind = decide(config, n).kind
            if kind == "truncate":
                with pytest.raises(httpx.RemoteProtocolError):
                    client.get(url)
            else:
                r = client.get(url)
                if kind == "slow":
                    assert r.content == clean.body
                else:  # a gateway's own failure page: 502, HTML, none of the API's headers (was a 200 "JSON")
                    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
                    assert b"502 Bad Gateway" in r.content and "x-request-id" not in r.headers
                    with pytest.raises(ResponseDecodeError):
                        models.decode_page(r.content)


# --- the command line ---------------------------------------------------------------------------------------


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-c", "from usageledger.cli import main; main()", "emulator", "--port", "0", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Emulator ready at http://127.0.0.1:"):
        proc.kill()  # its stderr ends only when it does: reading it first waited on a server that serves on
        _, err = proc.communicate(timeout=30)
        raise AssertionError(line + err)
    return proc, line.split(" at ", 1)[1].strip()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_emulator_command_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    """`usageledger emulator` prints its base URL when ready, serves /v1, and exits 0 on SIGTERM/SIGINT."""
    proc, url = _start_cli(
        "--days", "20", "--projects", "2", "--now", "2026-11-20T12:00:00Z", "--admin-key", "sk-admin-pinned"
    )
    try:
        assert url.endswith("/v1")
        r = httpx.get(
            f"{url}/organization/costs",
            params={"start_time": EMULATOR_NOW - 86400},
            headers={"Authorization": "Bearer sk-admin-pinned"},
        )
        assert r.status_code == 200 and models.decode_page(r.content).data
        assert httpx.get(f"{url}/organization/costs", params={"start_time": 0}, headers=KEY).status_code == 401
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Emulator stopped" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_does_not_wait_out_a_slow_answer_and_answers_it_as_the_api_would(sig: signal.Signals) -> None:
    """`emulator --latency 60s` with a request in flight took the whole latency to stop on SIGTERM or Ctrl-C (a
    `kill` had to wait a minute, or forever for a long enough latency). It now gives requests in flight a short
    grace (`_uvicorn.SHUTDOWN_GRACE`), cancels the rest, says so in one line (not uvicorn's traceback per request)
    and exits 0. The request cut off got uvicorn's plain-text `500 Internal Server Error`, which the client reported
    as a server failure with an unreadable body; it now gets the API's JSON error shape, 503 with `Retry-After` and
    its request ID, which the client retries and names."""
    proc, url = _start_cli("--days", "5", "--projects", "1", "--latency", "60s")
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(
                b"GET /v1/organization/costs?start_time=0 HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer sk-admin-x\r\n\r\n"
            )
            time.sleep(0.5)  # the request has arrived and waits out its latency
            proc.send_signal(sig)
            while chunk := conn.recv(65536):
                answer += chunk
            out, err = proc.communicate(timeout=20)  # it took 60 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Emulator stopped" in out
    assert "Traceback" not in err and "CancelledError" not in err, err
    [line] = err.strip().splitlines()
    assert re.search(r"stopped 1 request still running after [\d.]+ s$", line), err
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert lines[0] == "HTTP/1.1 503 Service Unavailable", answer
    assert headers["content-type"] == "application/json" and headers["retry-after"] == "1"
    assert headers["x-request-id"].startswith("req_")
    error = json.loads(body)["error"]
    assert error["type"] == "server_error" and "shutting down" in error["message"]


def test_a_pinned_key_is_read_as_clients_read_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """`USAGELEDGER_EMULATOR_ADMIN_KEY=" sk-admin-x "` was pinned with its spaces, so every client (which strips the
    key it sends, as `normalize_key` does) got 401 with the very key it was given. The pinned key is now read by the
    same rule: surrounding whitespace dropped, a space or control character inside refused in one line."""
    monkeypatch.setenv("USAGELEDGER_EMULATOR_ADMIN_KEY", "  sk-admin-pinned-padded \n")
    proc, url = _start_cli("--days", "5", "--projects", "1")
    try:
        answer = httpx.get(
            f"{url}/organization/costs",
            params={"start_time": 0, "limit": 1},
            headers={"Authorization": "Bearer sk-admin-pinned-padded"},
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert answer.status_code == 200, answer.text
    inner = CliRunner().invoke(app, ["emulator", "--port", "0", "--admin-key", "sk-admin-SECRET inside"])
    assert inner.exit_code == 1 and "SECRET" not in inner.output, inner.output
    assert inner.output.strip().splitlines() == [
        "error: the admin key from --admin-key (or USAGELEDGER_EMULATOR_ADMIN_KEY) (sk-admin-…) has a whitespace "
        "character inside it; paste the key again, exactly as issued"
    ]


def test_emulator_command_takes_fault_flags() -> None:
    """The fault flags reach the server: --rate-429 1 answers every request with 429 and Retry-After."""
    proc, url = _start_cli("--days", "5", "--projects", "1", "--rate-429", "1", "--latency", "1ms", "--jitter", "1ms")
    try:
        r = httpx.get(f"{url}/organization/costs", params={"start_time": 0}, headers=KEY)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_on_every_interface_the_url_printed_is_one_a_client_takes() -> None:
    """`emulator --host 0.0.0.0` printed "Emulator ready at http://0.0.0.0:PORT/v1", and the README's next step,
    `export OPENAI_BASE_URL=` that URL, was refused ("refusing plain http:// to 0.0.0.0"). It prints the loopback
    URL, which the client takes and the server answers on; the library's run_server yields the same."""
    proc, url = _start_cli("--host", "0.0.0.0", "--days", "5", "--projects", "1")  # asserts http://127.0.0.1:
    try:
        with Client(api_key="sk-admin-test-key", base_url=url) as client:
            assert client.page("costs", start_time=EMULATOR_NOW - 86400).data
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    with run_server(Emulator(EmulatorConfig(days=5, projects=1)), host="0.0.0.0") as served:
        assert served.startswith("http://127.0.0.1:") and httpx.get(served).status_code == 404


def test_emulator_command_refuses_bad_rates() -> None:
    """A rate above 1 is a usage error, not a traceback."""
    result = CliRunner().invoke(app, ["emulator", "--rate-drop", "2"])
    assert result.exit_code == 2


def test_demo_syncs_every_endpoint_and_prints_the_report(tmp_path: Path) -> None:
    """`usageledger demo` syncs every endpoint from the in-process emulator into DuckDB and prints the report."""
    store = tmp_path / "demo.duckdb"
    result = CliRunner().invoke(app, ["demo", "--days", "3", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert store.exists()
    for title in ("Synced", "Spend by project", "Spend by model", "Tokens and requests by model", "Daily spend"):
        assert title in result.output
    for endpoint in catalogue.ENDPOINTS:
        assert f"{endpoint.name}.1d." in result.output


async def test_one_transport_serves_sync_and_async_clients() -> None:
    """One EmulatorTransport instance serves httpx.Client and httpx.AsyncClient; the async path awaits its sleep."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    transport = faulty(latency=0.5).transport(sleep=record)
    url = f"/organization/costs?start_time={EMULATOR_NOW - 86400}"
    async with httpx.AsyncClient(transport=transport, base_url="http://e/v1", headers=KEY) as client:
        assert (await client.get(url)).status_code == 200
    assert slept == [0.5]
    with (
        httpx.Client(transport=transport, base_url="http://e/v1", headers=KEY) as sync_client,
        pytest.raises(TypeError, match="async sleep"),
    ):
        sync_client.get(url)


async def test_async_transport_matches_the_sync_one(emulator: Emulator) -> None:
    """httpx.AsyncClient on emulator.transport() gets the same bytes as httpx.Client on the same transport class."""
    params = {"start_time": EMULATOR_NOW - 86400 * 4, "group_by": "model"}
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e/v1", headers=KEY) as client:
        async_body = (await client.get("/organization/usage/web_search_calls", params=params)).content
    with httpx.Client(transport=emulator.transport(), base_url="http://e/v1", headers=KEY) as sync_client:
        assert sync_client.get("/organization/usage/web_search_calls", params=params).content == async_body
