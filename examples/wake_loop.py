"""The SYNAPSE wake loop for turn-based assistants: a backgrounded `synapse wait` exits the moment a message
addressed to the agent lands; the agent catches up with `synapse relay`, acts, and re-arms.

Run: python examples/wake_loop.py [--hub URL]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._hub import hub_url, synapse  # noqa: E402


def main() -> None:
    with hub_url(__doc__ or "") as (url, env):
        work = Path(tempfile.mkdtemp(prefix="wake-loop-"))
        feed, cursor = work / "feed.ndjson", work / "test-dev.cursor"
        synapse(env, "join", "test-dev")
        synapse(env, "join", "api-dev")
        for turn in range(1, 4):
            # Arm the waiter in the background (the harness would do this between turns).
            waiter = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hub",
                    "wait",
                    "--name",
                    "test-dev-rx",
                    "--for",
                    "test-dev",
                    "--directed-only",
                    "--cursor",
                    str(cursor),
                    "--timeout",
                    "30",
                    "--json",
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.3)  # the teammate works for a while...
            synapse(env, "send", "--name", "api-dev", "--target", "test-dev", f"API change #{turn} is ready")
            out, _ = waiter.communicate(timeout=30)
            woke = json.loads(out)
            print(f"turn {turn}: woken by #{woke['message']['seq']} from {woke['message']['from']}")
            relayed = synapse(
                env, "relay", str(feed), "--for", "test-dev", "--cursor", str(cursor)
            ).stdout.strip()
            print(f"  relayed {relayed} message(s); cursor at {cursor.read_text().strip()}")
            synapse(env, "send", "--name", "test-dev", "--target", "api-dev", f"tests updated for #{turn}")
        lines = feed.read_text().splitlines()
        assert [json.loads(x)["seq"] for x in lines] == sorted({json.loads(x)["seq"] for x in lines})
        print(f"{len(lines)} messages in {feed.name}, each exactly once")


if __name__ == "__main__":
    main()
