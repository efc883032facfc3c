"""HTTP API round trip and throughput beside the WebSocket figures, against a real hub on a temporary log.

    python bench/http_api.py [N]

Prints p50/p99 of one `send` round trip (HTTP keep-alive POST /v1/send vs one WebSocket frame and its reply)
and sends per second on one connection of each kind.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect  # noqa: E402

from bench.common import pct  # noqa: E402
from hub.config import HubConfig  # noqa: E402
from hub.server.hub import Hub  # noqa: E402


def start_hub(db: str) -> tuple[Hub, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    hub = Hub(HubConfig(host="127.0.0.1", port=0, db=db, rate_per_agent=None))
    asyncio.run_coroutine_threadsafe(hub.start(), loop).result(30)
    return hub, loop


def http_bench(port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/v1/join", b'{"name":"h"}', {"Content-Type": "application/json"})
    token = json.loads(conn.getresponse().read())["token"]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    body = b'{"name":"h","to":["*"],"body":"x"}'
    times = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", "/v1/send", body, headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        times.append(time.perf_counter() - t)
    conn.close()
    return times


async def ws_bench(url: str, n: int) -> list[float]:
    async with connect(url, compression=None) as ws:
        await ws.send(json.dumps({"op": "join", "id": 1, "name": "w"}))
        token = json.loads(await ws.recv())["result"]["token"]
        times = []
        for i in range(n):
            frame = json.dumps(
                {"op": "send", "id": i + 2, "name": "w", "to": ["*"], "body": "x", "token": token}
            )
            t = time.perf_counter()
            await ws.send(frame)
            await ws.recv()
            times.append(time.perf_counter() - t)
        return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as d:
        hub, loop = start_hub(str(Path(d) / "log.db"))
        for name, times in (
            ("http", http_bench(hub.port, n)),
            ("websocket", asyncio.run(ws_bench(hub.url, n))),
        ):
            ms = [t * 1000 for t in times]
            print(
                f"{name:9} send round trip p50 {pct(ms, 50):.3f} ms  p99 {pct(ms, 99):.3f} ms  "
                f"{n / sum(times):,.0f} sends/s on one connection"
            )
        asyncio.run_coroutine_threadsafe(hub.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)


if __name__ == "__main__":
    main()
