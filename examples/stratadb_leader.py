"""Leader election (StrataDB recipe): five agent processes race `synapse state cas leader none NAME`; the
one whose CAS lands is the leader, every other one reads who won. Then only the leader passes a write gate
on `state._shared.leader`.

Run: python examples/stratadb_leader.py [--hub URL]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Code, HubError, SyncAgent  # noqa: E402
from examples._hub import hub_url  # noqa: E402

NODES = [f"node-{i}" for i in range(5)]
ROOM = f"election-{os.getpid()}"

ELECT = """
if synapse --name "$AGENT_ID" state cas leader none "$AGENT_ID" 2>/dev/null > /dev/null; then
    echo "$AGENT_ID is now the leader"
else
    current=$(synapse state get leader --raw)
    echo "$AGENT_ID is not the leader (current: $current)"
fi
"""


def main() -> None:
    with hub_url(__doc__ or "") as (url, env):
        env = {**env, "SYNAPSE_ROOM": ROOM}
        script = f'set -euo pipefail\nsynapse() {{ "{sys.executable}" -m hub "$@"; }}\n' + ELECT
        procs = [
            subprocess.Popen(
                ["bash", "-c", script], env={**env, "AGENT_ID": name}, stdout=subprocess.PIPE, text=True
            )
            for name in NODES
        ]
        lines = [p.communicate(timeout=60)[0].strip() for p in procs]
        for line in lines:
            print(line)
        leaders = [line.split()[0] for line in lines if line.endswith("is now the leader")]
        assert len(leaders) == 1, lines
        for name in NODES:  # leader-only work: each node's write is gated on being the leader itself
            with SyncAgent(name, room=ROOM, hub=url, save_token=False) as node:
                try:
                    node.state.set("epoch", 1, increment=True, if_=f'state._shared.leader == "{name}"')
                    print(f"{name}: bumped the epoch as leader")
                except HubError as exc:
                    assert exc.code == Code.PRECONDITION_FAILED, exc
        with SyncAgent(room=ROOM, hub=url) as reader:
            entry = reader.state.get("leader")
            print(
                f"leader: {entry['value']} (version {entry['version']}); epoch: {reader.state.get('epoch')['value']}"
            )


if __name__ == "__main__":
    main()
