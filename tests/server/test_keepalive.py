"""The hub-wide keepalive: a peer that stops answering pings is closed 1011 "keepalive ping timeout" within two
rounds, while peers that answer stay connected and served; an idle connection keeps no task of its own."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

from agent_sdk import SyncAgent
from tests.conftest import ThreadHub, hub_config, seconds

PING = 0.2  # seconds between rounds in this test


def silent_peer(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (so never answers a ping)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds(10_000))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the hub sends until it closes the connection (bounded by the socket's timeout)."""
    got = b""
    while chunk := sock.recv(4096):
        got += chunk
    return got


def test_a_peer_without_pongs_is_closed_and_the_others_stay(db_path: Path) -> None:
    th = ThreadHub(hub_config(db_path, ping_interval=PING))
    try:
        with SyncAgent("alice", hub=th.url, save_token=False) as alice:
            alice.join()
            silent = silent_peer(th.hub.port)
            with silent:
                frames = read_until_closed(silent)  # pings, then a close frame, then EOF
            assert b"\x89" in frames  # a ping frame (FIN + opcode 9) came first
            assert b"keepalive ping timeout" in frames
            assert frames.count(b"\x88") >= 1  # the close frame
            # alice answered every ping of those rounds: still connected, still served
            assert alice.send("alice", "still here") >= 1
            assert th.hub is not None and th.hub.keepalive.handle is not None
            assert all(not s.closing for s in th.hub.sessions.values())
    finally:
        th.stop()
