#!/usr/bin/env bash
# Runs one chat-room benchmark on loopback: starts a server, runs a client
# against it, stops the server. Both get PORT and CLIENTS_COUNT.
#
#   scripts/bench/run-chat.sh bun              # chat-bun.js under Bun
#   scripts/bench/run-chat.sh node             # chat-node.mjs under Node + ws
#   scripts/bench/run-chat.sh -- CMD [ARG...]  # any server that speaks PROTOCOL.md
#
# Environment:
#   CLIENTS_COUNT  clients (default 32, as in the original benchmark)
#   PORT           port (default 4001)
#   RUNS           one-second reports the client prints (default 10)
#   CLIENT         client command (default: bun scripts/bench/chat-client-bun.js)
# The client is stopped after RUNS + 30 seconds whatever happens, and the
# server when this script ends.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)

eval "$("$repo/scripts/bench-setup")" # sets $bun and $node_modules

export PORT=${PORT:-4001}
export CLIENTS_COUNT=${CLIENTS_COUNT:-32}
export RUNS=${RUNS:-10}

case "${1:-}" in
  bun) server=("$bun" "$here/chat-bun.js") ;;
  node) server=(node "$here/chat-node.mjs") ;;
  --) shift; [ $# -gt 0 ] || { echo "run-chat: no server command after --" >&2; exit 2; }; server=("$@") ;;
  *) echo "usage: run-chat.sh bun|node|-- CMD [ARG...]" >&2; exit 2 ;;
esac
if [ -n "${CLIENT:-}" ]; then
  read -r -a client <<<"$CLIENT"
else
  client=("$bun" "$here/chat-client-bun.js")
fi

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "run-chat: something already listens on 127.0.0.1:$PORT" >&2
  exit 1
fi

"${server[@]}" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT

# Wait (at most 10 s) for the server to accept connections.
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { echo "run-chat: the server exited" >&2; exit 1; }
  sleep 0.1
done

timeout --kill-after=5 "$((RUNS + 30))" "${client[@]}"
