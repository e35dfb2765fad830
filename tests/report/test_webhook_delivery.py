"""Webhook delivery as a careless user meets it: a URL that moved, a host that answers oddly. Never the URL's path."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from usageledger.errors import AlertDeliveryError
from usageledger.report.alerts import Alert, post_webhook, slack_payload

from fixtures.reports import check_result

SECRET = "XSECRETX0123"
URL = f"http://hooks.example.com/services/T0AB12/B0CD34/{SECRET}"


def _answering(status: int, headers: dict[str, str]) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, headers=headers))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_webhook_sent_on_to_https_says_to_give_the_https_url(status: int) -> None:
    """An http:// webhook the host redirects to https:// said "HTTP 301 with no body; check the webhook URL": the user
    had to guess the URL had moved. The refusal says where it goes (scheme and host) and that the https form is the
    fix, and the path, the old or the new one, is never shown."""
    moved = _answering(status, {"Location": URL.replace("http://", "https://")})
    with pytest.raises(AlertDeliveryError) as caught:
        post_webhook(URL, {"text": "x"}, transport=moved)
    message = str(caught.value)
    assert message == (
        f"webhook http://hooks.example.com: HTTP {status} redirects to https://hooks.example.com, and a webhook's POST"
        " is not sent on to another URL; give the https:// form of the webhook URL"
    )


def test_a_webhook_moved_elsewhere_names_the_new_host_not_its_path() -> None:
    """A redirect to another host (relative or absolute Location) names that host only: the new path may be the new
    credential."""
    moved = _answering(302, {"Location": "https://new.example.net/hooks/NEWTOKEN99"})
    with pytest.raises(AlertDeliveryError) as caught:
        post_webhook(URL, {"text": "x"}, transport=moved)
    message = str(caught.value)
    assert "redirects to https://new.example.net," in message
    assert "give the webhook URL it redirects to" in message
    assert "NEWTOKEN99" not in message and SECRET not in message and "T0AB12" not in message
    relative = _answering(303, {"Location": f"/v2/services/T0AB12/B0CD34/{SECRET}"})
    with pytest.raises(AlertDeliveryError) as caught:
        post_webhook(URL, {"text": "x"}, transport=relative)
    assert "HTTP 303 redirects to http://hooks.example.com," in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_redirect_to_a_broken_location_is_still_one_line() -> None:
    """A Location that is not a URL (an unclosed IPv6 bracket) still says it was a redirect, not followed."""
    broken = _answering(302, {"Location": f"http://[::1/{SECRET}"})
    with pytest.raises(AlertDeliveryError) as caught:
        post_webhook(URL, {"text": "x"}, transport=broken)
    assert str(caught.value) == (
        "webhook http://hooks.example.com: HTTP 302 redirects elsewhere, which is not followed; check the webhook URL"
    )


class _Trickler(BaseHTTPRequestHandler):
    """Answers with its status, then its body one byte every 50 ms (100 bytes, 5 s), as a host on its knees does."""

    status: ClassVar[int] = 500

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            return  # the client has gone

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.mark.parametrize("status", [500, 200])
def test_a_webhook_that_trickles_its_answer_is_given_up_on_in_time(status: int) -> None:
    """The timeout was per read, and the whole body was read: a host sending a byte every few seconds held `check`
    in cron as long as it liked. The status is the answer; of an error body, what came within the timeout."""
    handler = type("Handler", (_Trickler,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() returns at the serving loop's next look, every 0.5 s by default: half a second per server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/{SECRET}"
    try:
        started = time.monotonic()
        if status == 200:
            assert post_webhook(url, {"text": "x"}, timeout=0.5) == 200
        else:
            with pytest.raises(AlertDeliveryError, match=r"HTTP 500: x+; check the webhook URL$"):
                post_webhook(url, {"text": "x"}, timeout=0.5)
        assert time.monotonic() - started < 2.5
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_name_in_an_alert_cannot_ping_the_channel_or_make_a_link() -> None:
    """Names come from the directory, which any project owner edits: a project named `<!channel>` paged the whole
    Slack channel when its budget alert fired, and `<https://x.example|Search>` showed a link. Slack's entities (&, <,
    >) make them text, in the blocks and the fallback, and a long message is never cut inside an entity."""
    alert = Alert("budget", "project <!channel> (proj_a)", "monthly spend on <https://x.example|Search> & co")
    payload = slack_payload(check_result(alert))
    section = payload["blocks"][1]["text"]["text"]
    assert section == (
        "*budget* · project &lt;!channel&gt; (proj_a)\nmonthly spend on &lt;https://x.example|Search&gt; &amp; co"
    )
    assert "<" not in payload["text"]
    assert "&lt;https://x.example|Search&gt; &amp; co" in payload["text"]
    long = slack_payload(check_result(Alert("budget", "organisation", "x" * 2990 + "&" * 10)))
    for text in (long["text"], long["blocks"][1]["text"]["text"]):
        assert len(text) <= 3000 and text.endswith(("&amp;", "x")), text[-12:]
