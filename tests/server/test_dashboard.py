"""The dashboard in a real headless browser: live without reload, agent data shown as text, admin token gating.

Needs Debian's `chromium` (/usr/bin/chromium, or $SYNAPSE_TEST_CHROMIUM) and Playwright's Python package; skips,
saying which is missing. The browser runs in a temporary home of its own (its profile, crash reports and
caches), so nothing lands in ~/.config/chromium.
The screenshot lands in artifacts/dashboard.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.sync import SyncAgent
from hub.config import HubConfig
from tests.conftest import ROOT, ThreadHub, hub_config, seconds

CHROMIUM = os.environ.get("SYNAPSE_TEST_CHROMIUM", "/usr/bin/chromium")  # Debian's; override elsewhere
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<img src=x onerror=alert(1)>"
ADMIN = "dash-admin"


HOME_VARS = (  # where a browser writes besides its profile: crash reports, caches, the NSS database (~/.pki)
    ("HOME", "."),
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_CACHE_HOME", ".cache"),
    ("XDG_DATA_HOME", ".local/share"),
    ("TMPDIR", "tmp"),  # Playwright makes the temporary --user-data-dir here
)


@pytest.fixture(scope="module")
def browser_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home of the browser's own for the module's life (the per-test home comes after a module fixture)."""
    home = tmp_path_factory.mktemp("browser-home")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in HOME_VARS:
            (home / sub).mkdir(parents=True, exist_ok=True)
            mp.setenv(var, str(home / sub))
        yield home


@pytest.fixture(scope="module")
def browser(browser_home: Path) -> Iterator[Any]:
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which(CHROMIUM)
    if executable is None:
        pytest.skip(
            f"no chromium at {CHROMIUM}: `apt-get install -y chromium` to run the dashboard in a browser"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no playwright: `pip install playwright` (the dev extra) to drive the browser")
    args = [*ARGS, f"--crash-dumps-dir={browser_home / 'crash'}"]  # else ~/.config/chromium/Crash Reports
    with sync_playwright() as p:  # its driver, and so the browser, get the environment of browser_home
        try:
            launched = p.chromium.launch(executable_path=executable, args=args, env=dict(os.environ))
        except Exception as exc:  # a browser that cannot start here is an environment problem, not a failure
            pytest.skip(f"chromium at {executable} would not start: {str(exc).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(autouse=True)
def _tokens_here(client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


def page_of(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A fresh page at `url`; alerts and page errors are collected (there must be none)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    problems: list[str] = []
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    page.goto(url)
    page.wait_for_selector(".status-live", timeout=seconds(10_000) * 1000)
    return page, problems


def text_of(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


async def test_a_batched_tail_sends_one_frame_per_commit_with_every_event(hub: ThreadHub) -> None:
    """What the page follows: `tail` with `batch` gets EventBatch frames holding the same events, in order, as
    EventFrames would (the backlog too), so an open dashboard costs one frame per group commit."""
    from websockets.asyncio.client import connect

    with SyncAgent("alice", hub=hub.url) as alice:
        for i in range(3):
            alice.send("*", f"b{i}", allow_unknown=True)
    async with connect(hub.url) as single, connect(hub.url) as batched:
        await single.send(json.dumps({"op": "tail", "id": 1, "after": 0}))
        await batched.send(json.dumps({"op": "tail", "id": 1, "after": 0, "batch": True}))

        async def collect(ws: Any, batch: bool) -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            while not any(f["event"].get("body") == "live" for f in got):
                frame = json.loads(await asyncio.wait_for(ws.recv(), seconds(5_000)))
                if frame["type"] == "EventBatch":
                    assert batch and frame["events"]
                    got += frame["events"]
                elif frame["type"] == "EventFrame":
                    assert not batch
                    got.append(frame)
            return got

        tasks = [asyncio.ensure_future(collect(single, False)), asyncio.ensure_future(collect(batched, True))]
        await asyncio.to_thread(_send_live, hub.url)
        one, many = await asyncio.gather(*tasks)
    assert one == many
    assert [f["position"] for f in many] == list(range(1, len(many) + 1))


def _send_live(url: str) -> None:
    with SyncAgent("alice", hub=url) as alice:
        alice.send("*", "live", allow_unknown=True)


def test_a_message_sent_after_load_shows_within_a_second(hub: ThreadHub, browser: Any) -> None:
    """The page loads the room, then a message sent later appears without reload or polling in under 1 s;
    claims, plan, presence and state follow their events too; hostile strings stay text."""
    http = hub.url.replace("ws://", "http://", 1)
    with SyncAgent("alice", hub=hub.url, role="<b>lead</b>") as alice, SyncAgent("bob", hub=hub.url) as bob:
        bob.attach()
        alice.send("*", "before the page", allow_unknown=True)
        page, problems = page_of(browser, http + "/")
        page.wait_for_function(
            "() => document.getElementById('feed').textContent.includes('before the page')"
        )
        sent = time.monotonic()
        alice.send("*", "after the page", allow_unknown=True)
        page.wait_for_function(
            "() => document.getElementById('feed').textContent.includes('after the page')",
            timeout=seconds(1_000) * 1000,
        )
        assert time.monotonic() - sent < seconds(1_000)
        alice.send("*", XSS, allow_unknown=True)
        alice.claim("edit-api", ["src/api/"], checkpoint="<script>alert(2)</script>")
        alice.tasks.declare("T-1", f"epic {XSS}", epic=True)
        alice.tasks.declare("T-2", "write the API", parent="T-1")
        alice.state.set("turn", {"html": "<i>x</i>"})
        bob.heartbeat("busy")
        page.wait_for_function(
            "() => ['#feed', '#claims', '#plan', '#state'].every(s => document.querySelector(s).textContent.length)"
            " && document.getElementById('claims').textContent.includes('edit-api')"
            " && document.getElementById('plan').textContent.includes('write the API')"
            " && document.getElementById('state').textContent.includes('turn')"
            " && document.getElementById('agents').textContent.includes('busy')",
            timeout=seconds(5_000) * 1000,
        )
        assert XSS in text_of(page, "#feed") and XSS in text_of(page, "#plan")
        assert "<script>alert(2)</script>" in text_of(page, "#claims")
        assert "<b>lead</b>" in text_of(page, "#agents") and '"<i>x</i>"' in text_of(page, "#state")
        assert page.locator("main img, main script, main b, main i").count() == 0  # nothing became markup
        artifacts = ROOT / "artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
        assert problems == []
        page.close()


def test_the_dashboard_needs_the_admin_token_to_list_rooms(db_path: Path, browser: Any) -> None:
    """On a hub with an admin token the page asks for it; `/?token=` lists every room and the picker switches."""
    th = ThreadHub(hub_config(db_path, admin_token=ADMIN))
    try:
        with SyncAgent("dana", room="ops", hub=th.url, admin_token=ADMIN) as dana:
            dana.send("dana", "ops only", allow_unknown=True)
        with SyncAgent("erin", hub=th.url, admin_token=ADMIN) as erin:
            erin.send("erin", "default only", allow_unknown=True)
        http = th.url.replace("ws://", "http://", 1)
        page, problems = page_of(browser, http + "/")
        page.wait_for_selector("#auth:not([hidden])")
        assert "admin token" in text_of(page, "#notice")
        page.fill("#token", ADMIN)
        page.click("#auth button")
        page.wait_for_function("() => document.querySelectorAll('#room option').length === 2")
        assert page.locator("#auth").is_hidden()
        page.close()
        page, problems = page_of(browser, f"{http}/?token={ADMIN}&room=ops")
        assert "token=" not in page.url  # the token leaves the address bar at once
        page.wait_for_function("() => document.getElementById('feed').textContent.includes('ops only')")
        page.select_option("#room", "default")
        page.wait_for_function("() => document.getElementById('feed').textContent.includes('default only')")
        assert "ops only" not in text_of(page, "#feed")
        assert problems == []
        page.close()
    finally:
        th.stop()


def test_the_page_reconnects_after_a_hub_restart_and_stays_live(db_path: Path, browser: Any) -> None:
    """Stop the hub under an open page, start it again on the same port: the page says so, reconnects by itself,
    resumes its tail after the last event it showed, and shows what is sent next (no reload)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = HubConfig(host="127.0.0.1", port=port, db=str(db_path))
    first = ThreadHub(config)
    try:
        with SyncAgent("alice", hub=first.url) as alice:
            alice.send("*", "before the restart", allow_unknown=True)
        page, problems = page_of(browser, first.url.replace("ws://", "http://", 1) + "/")
        page.wait_for_function(
            "() => document.getElementById('feed').textContent.includes('before the restart')"
        )
    finally:
        first.stop()
    page.wait_for_selector(".status-down", timeout=seconds(5_000) * 1000)
    again = ThreadHub(config)
    try:
        page.wait_for_selector(".status-live", timeout=seconds(10_000) * 1000)
        with SyncAgent("alice", hub=again.url) as alice:
            alice.send("*", "after the restart", allow_unknown=True)
        page.wait_for_function(
            "() => document.getElementById('feed').textContent.includes('after the restart')"
            " && document.getElementById('events').textContent.includes('HubStarted')",
            timeout=seconds(5_000) * 1000,
        )
        assert problems == []
        page.close()
    finally:
        again.stop()


# Last in the file, as the other browser tests come after the async one: once started, the sync browser keeps an
# event loop running in this thread, where an async test can no longer run its own.
def _browser_processes(home: Path) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of the running chromium and crashpad processes naming `home` (forked helpers,
    whose command line is rewritten over their environment, are left out: they share their parent's)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            if len(argv) < 2 or "/chrom" not in argv[0] or not any(str(home) in a for a in argv):
                continue
            pairs = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        env = dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)
        found.append((argv, env))
    return found


def test_the_browser_keeps_to_a_home_of_its_own(browser: Any, browser_home: Path) -> None:
    """The browser's profile (--user-data-dir, a temporary one Playwright makes), its crash database and its
    HOME are all inside the module's temporary home: nothing is written to ~/.config/chromium."""
    page = browser.new_page()
    try:
        page.goto("about:blank")
        running = _browser_processes(browser_home)
    finally:
        page.close()
    assert any("--user-data-dir=" in " ".join(argv) for argv, _env in running), running
    for argv, env in running:
        for flag in ("--user-data-dir=", "--crash-dumps-dir=", "--database="):
            for arg in argv:
                if arg.startswith(flag):
                    assert Path(arg[len(flag) :]).is_relative_to(browser_home), arg
        assert Path(env["HOME"]).is_relative_to(browser_home), argv[0]
        assert Path(env["XDG_CONFIG_HOME"]).is_relative_to(browser_home), argv[0]
    assert any(p.name.startswith("playwright_chromiumdev_profile-") for p in (browser_home / "tmp").iterdir())
