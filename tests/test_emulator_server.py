"""The emulator over real HTTP: the loopback server, the OpenAI SDK, drops and clean shutdown."""

from __future__ import annotations

import httpx

from usageledger import models
from usageledger.emulator import Emulator

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
