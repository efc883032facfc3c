#!/usr/bin/env bash
# A turn-based counting game between two agents through the hub's HTTP API, with curl and jq only.
# Usage: http_game.sh http://127.0.0.1:PORT [GOAL]   Each turn: wait for the other's move, add one, send it.
set -euo pipefail
BASE=$1
GOAL=${2:-10}

post() { # TOKEN OP JSON
  local auth=()
  [ -n "$1" ] && auth=(-H "Authorization: Bearer $1")
  curl -sS --fail-with-body -X POST "$BASE/v1/$2" -H 'Content-Type: application/json' "${auth[@]}" -d "$3"
}

ALICE=$(post "" join '{"name":"alice"}' | jq -r .token)
BOB=$(post "" join '{"name":"bob"}' | jq -r .token)

play() { # ME OTHER TOKEN
  local me=$1 other=$2 tok=$3 after=0 woke n
  while :; do
    woke=$(post "$tok" wait "{\"waiter\":\"$me\",\"for\":\"$me\",\"after\":$after,\"timeout\":60}")
    after=$(jq .message.seq <<<"$woke")
    n=$(jq .message.body.n <<<"$woke")
    if [ "$n" -ge "$GOAL" ]; then echo "$me saw $n"; return; fi
    post "$tok" send "{\"name\":\"$me\",\"to\":[\"$other\"],\"body\":{\"n\":$((n + 1))}}" >/dev/null
    if [ $((n + 1)) -ge "$GOAL" ]; then echo "$me reached $((n + 1))"; return; fi
  done
}

play bob alice "$BOB" > "${TMPDIR:-/tmp}/game_bob.$$" &
BOB_PID=$!
post "$ALICE" send '{"name":"alice","to":["bob"],"body":{"n":1}}' >/dev/null
play alice bob "$ALICE"
wait "$BOB_PID"
cat "${TMPDIR:-/tmp}/game_bob.$$"
rm -f "${TMPDIR:-/tmp}/game_bob.$$"
post "$ALICE" message.list '{"limit":1000}' | jq -c '[.messages[] | [.from, .body.n]]'
