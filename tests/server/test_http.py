"""Plain HTTP on the hub's port: /healthz, /readyz, the dashboard's files (and nothing else), /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ThreadHub, hub_config, seconds


def http_url(hub: ThreadHub) -> str:
    return hub.url.replace("ws://", "http://", 1)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=seconds(5_000)) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_healthz_and_readyz_say_ok_on_a_running_hub(hub: ThreadHub) -> None:
    """A serving hub is alive and ready: replay done, log writable, not draining."""
    status, headers, body = get(http_url(hub) + "/healthz")
    assert status == 200 and json.loads(body) == {"ok": True}
    assert headers["Content-Type"] == "application/json"
    status, _, body = get(http_url(hub) + "/readyz")
    ready = json.loads(body)
    assert status == 200
    assert ready["ready"] and ready["replay_done"] and ready["log_writable"] and not ready["draining"]
    assert ready["position"] >= 1  # HubStarted at least


def test_readyz_is_503_once_the_log_failed(hub: ThreadHub) -> None:
    """A hub whose log stopped being writable is neither live nor ready (503), so a balancer takes it out."""
    assert hub.hub is not None
    hub.loop.call_soon_threadsafe(hub.hub._failed, OSError("disk gone"))
    hub.call(hub.hub.stopped.wait())
    try:
        status, _, body = get(http_url(hub) + "/readyz")
        assert status == 503 and json.loads(body)["log_writable"] is False
        status, _, body = get(http_url(hub) + "/healthz")
        assert status == 503 and json.loads(body) == {"ok": False}
    finally:
        hub.hub.stopped.clear()
        hub.call(hub.hub.stop())  # close the listener and the writer the failure left behind


def test_readyz_reports_what_replay_restored(db_path: Path) -> None:
    """After a restart, /readyz counts the events replayed and the position they reached."""
    first = ThreadHub(hub_config(db_path))
    first.stop()
    again = ThreadHub(hub_config(db_path))
    try:
        status, _, body = get(http_url(again) + "/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["replayed"] >= 1 and ready["position"] >= 2
    finally:
        again.stop()


def test_dashboard_page_and_its_files_are_served_with_a_strict_policy(hub: ThreadHub) -> None:
    """GET / is the dashboard; its script and stylesheet come from /static/; scripts run only from there."""
    status, headers, body = get(http_url(hub) + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/static/dashboard.js">' in body
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, headers, body = get(f"{http_url(hub)}/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
    status, _, _ = get(http_url(hub) + "/?token=x&room=default")
    assert status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/../http.py",
        "/static/..%2fhttp.py",
        "/static/%2e%2e/hub.py",
        "/static/",
        "/static/missing.js",
        "/static/.hidden.js",
        "/static/index.py",
        "/etc/passwd",
        "/nothing",
    ],
)
def test_nothing_outside_the_static_files_is_served(hub: ThreadHub, path: str) -> None:
    """Only the dashboard's own files are reachable: traversal, hidden or unknown names are 404."""
    status, _, body = get(http_url(hub) + path)
    assert status == 404, (path, body[:80])


def test_metrics_is_prometheus_text(hub: ThreadHub) -> None:
    """/metrics answers in the Prometheus text format."""
    status, headers, body = get(http_url(hub) + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE synapse_connections gauge" in body


def test_a_websocket_still_upgrades_on_the_same_port(hub: ThreadHub) -> None:
    """HTTP handling leaves WebSocket upgrades to the hub (one port for both)."""
    from agent_sdk.sync import SyncAgent

    with SyncAgent(hub=hub.url) as client:
        assert client.status()["rooms"] >= 0


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
PLAIN = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY),
         ("Sec-WebSocket-Version", "13")]  # fmt: skip
VARIANTS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("plain", PLAIN, "HTTP/1.1"),
    (
        "other case",
        [
            (n.lower(), v.upper() if n == "Upgrade" else v.lower() if n == "Connection" else v)
            for n, v in PLAIN
        ],
        "HTTP/1.1",
    ),  # fmt: skip
    ("an origin", [*PLAIN, ("Origin", "http://a.example")], "HTTP/1.1"),
    ("two origins", [*PLAIN, ("Origin", "http://a"), ("Origin", "http://b")], "HTTP/1.1"),
    (
        "keep-alive too",
        [(n, "keep-alive, Upgrade" if n == "Connection" else v) for n, v in PLAIN],
        "HTTP/1.1",
    ),
    ("no connection", [(n, v) for n, v in PLAIN if n != "Connection"], "HTTP/1.1"),
    ("two upgrades", [*PLAIN, ("Upgrade", "websocket")], "HTTP/1.1"),
    ("upgrade h2c", [(n, "h2c" if n == "Upgrade" else v) for n, v in PLAIN], "HTTP/1.1"),
    ("short key", [(n, "dGhlIHNhbXBsZQ==" if n == "Sec-WebSocket-Key" else v) for n, v in PLAIN], "HTTP/1.1"),
    ("bad key", [(n, "not base64!" if n == "Sec-WebSocket-Key" else v) for n, v in PLAIN], "HTTP/1.1"),
    ("two keys", [*PLAIN, ("Sec-WebSocket-Key", KEY)], "HTTP/1.1"),
    ("no key", [(n, v) for n, v in PLAIN if n != "Sec-WebSocket-Key"], "HTTP/1.1"),
    ("version 12", [(n, "12" if n == "Sec-WebSocket-Version" else v) for n, v in PLAIN], "HTTP/1.1"),
    ("no version", [(n, v) for n, v in PLAIN if n != "Sec-WebSocket-Version"], "HTTP/1.1"),
    ("deflate asked", [*PLAIN, ("Sec-WebSocket-Extensions", "permessage-deflate")], "HTTP/1.1"),
    ("garbled extensions", [*PLAIN, ("Sec-WebSocket-Extensions", ";;")], "HTTP/1.1"),
    ("a subprotocol", [*PLAIN, ("Sec-WebSocket-Protocol", "chat")], "HTTP/1.1"),
    ("HTTP/1.0", PLAIN, "HTTP/1.0"),
]


@pytest.mark.parametrize(("name", "headers", "protocol"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_the_fast_upgrade_answers_as_websockets_accept_does(
    name: str, headers: list[tuple[str, str]], protocol: str
) -> None:
    """`http.switching` gives a plain upgrade byte for byte the 101 websockets' `accept` gives it, and leaves
    every other request (None) to `accept`, which refuses or negotiates it itself."""
    from websockets.datastructures import Headers
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    from hub.server import http

    raw = f"GET / {protocol}\r\n".encode() + Headers(headers).serialize()
    parser = ServerProtocol()
    parser.receive_data(raw)
    (request,) = parser.events_received()
    assert isinstance(request, Request)
    for _ in range(3):  # the Date header moves with the clock: a second may pass between the two answers
        fast = http.switching(request)
        accepted = ServerProtocol().accept(request)
        if fast is None or fast.headers["Date"] == accepted.headers["Date"]:
            break
    if fast is None:
        assert name not in ("plain", "other case", "an origin")
    else:
        assert accepted.status_code == 101 and fast.serialize() == accepted.serialize()
