"""The README is executed: every sh and python block runs, in order, against a fresh real hub.

Markers: `<!-- readme-test: skip REASON -->` before a block skips it; a line ending in `&` runs in the
background (waited for at the end of its block); a trailing `(exit N)` in a line's comment declares its
exit code; lines starting long-running commands (`synapse hub`, `tail` without `--count`, `supervisor`,
`mcp`) are skipped; `VAR=value` lines set VAR for the rest of their block. `http://127.0.0.1:8876` in a shell block (curl) is the test hub's address.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, ThreadHub

FENCE = re.compile(
    r"(?:<!-- readme-test: skip (?P<skip>[^>]*)-->\s*\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)
EXIT = re.compile(r"\(exit (\d+)\)")
LONG = re.compile(r"^synapse (--\S+ \S+ )*(hub\b|tail\b(?!.*--count)|supervisor\b|mcp\b)")
ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=\S")
TIMEOUT = 30.0


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(language, body, skip reason or None) of each fenced block, in order."""
    return [(m["lang"], m["body"], m["skip"]) for m in FENCE.finditer(text)]


def split_comment(line: str) -> tuple[str, str]:
    """The command and its trailing comment (a `#` outside quotes, preceded by a space)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] == " "):
            return line[:i].rstrip(), line[i + 1 :]
    return line.rstrip(), ""


def run_sh(body: str, env: dict[str, str], cwd: Path) -> None:
    background: list[tuple[str, subprocess.Popen[str]]] = []
    if hub := env.get("SYNAPSE_HUB"):
        body = body.replace("http://127.0.0.1:8876", hub.replace("ws://", "http://", 1))
    try:
        _run_lines(body, env, cwd, background)
        for cmd, proc in background:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"{cmd!r} (background): exit {proc.returncode}\n{out}\n{err}"
    finally:
        for _, proc in background:  # a failed line leaves no waiter behind
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _run_lines(
    body: str, env: dict[str, str], cwd: Path, background: list[tuple[str, subprocess.Popen[str]]]
) -> None:
    for raw in body.splitlines():
        cmd, comment = split_comment(raw.strip())
        if not cmd or LONG.match(cmd):
            continue
        m = EXIT.search(comment)
        want = int(m.group(1)) if m else 0
        if assigned := ASSIGN.match(cmd):  # VAR=value: kept for the block's later lines, as a shell would
            res = subprocess.run(
                ["bash", "-c", f'{cmd}; printf %s "${assigned[1]}"'],
                env=env,
                cwd=cwd,
                text=True,
                capture_output=True,
                timeout=TIMEOUT,
            )
            assert res.returncode == 0 and res.stdout, f"{cmd!r}: exit {res.returncode}\n{res.stderr}"
            env = {**env, assigned[1]: res.stdout}
            continue
        if cmd.endswith("&") and not cmd.endswith("&&"):
            proc = subprocess.Popen(
                ["bash", "-c", cmd[:-1]],
                env=env,
                cwd=cwd,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            background.append((cmd, proc))
            continue
        res = subprocess.run(
            ["bash", "-c", cmd], env=env, cwd=cwd, text=True, capture_output=True, timeout=TIMEOUT
        )
        assert res.returncode == want, (
            f"{cmd!r}: exit {res.returncode}, want {want}\n{res.stdout}\n{res.stderr}"
        )


def run_py(body: str, env: dict[str, str], cwd: Path) -> None:
    script = cwd / "readme_snippet.py"
    script.write_text(body.replace("ws://127.0.0.1:8876", env["SYNAPSE_HUB"]))
    res = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=cwd, text=True, capture_output=True, timeout=TIMEOUT
    )
    assert res.returncode == 0, f"python block: exit {res.returncode}\n{res.stdout}\n{res.stderr}"


def test_readme_blocks_run_in_order(hub: ThreadHub, db_path: Path, tmp_path: Path) -> None:
    env = dict(os.environ)  # HOME and XDG_* already point into a temporary home (tests/conftest.py)
    env["SYNAPSE_HUB"] = hub.url
    env["SYNAPSE_DB"] = str(db_path)  # backup, restore and log migrate default to the running hub's log
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    ran = 0
    for lang, body, skip in blocks((ROOT / "README.md").read_text()):
        if skip is not None:
            continue
        if lang in ("sh", "bash", "console"):
            run_sh(body, env, tmp_path)
        elif lang == "python":
            run_py(body, env, tmp_path)
        else:
            continue
        ran += 1
    assert ran >= 5, f"only {ran} blocks ran: did the README's fences change?"


def test_runner_fails_on_drift(tmp_path: Path) -> None:
    """The runner is not a rubber stamp: a wrong exit code, in the foreground or background, fails it."""
    env = dict(os.environ)
    run_sh("true\nfalse  # refused (exit 1)\necho '# not a comment (exit 3)'\n", env, tmp_path)
    for body in ("false\n", "true  # (exit 1)\n", "false &\n", "synapse-no-such-command\n"):
        try:
            run_sh(body, env, tmp_path)
        except AssertionError:
            continue
        raise AssertionError(f"{body!r} passed")


def test_blocks_and_skip_marker() -> None:
    text = "x\n<!-- readme-test: skip installs -->\n```sh\npip install x\n```\n```python\nprint(1)\n```\n"
    assert blocks(text) == [("sh", "pip install x\n", "installs "), ("python", "print(1)\n", None)]
