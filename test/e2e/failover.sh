#!/usr/bin/env bash
# Drives a cluster's shared identity and the client's failover through the
# compiled binary: two nodes started with one `serve --host-key FILE` present
# one key; a `--host-key` that is missing is refused and nothing is made; a
# client given both addresses pins the key once, under the first, and goes
# to the second when the first is down, without asking again; a node with
# another key is exit 4, never a silent skip; when every address is down the
# error names each one. And a line pending when a server dies is sent again
# after it restarts, and recorded once.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin
PW="one key for the whole cluster"

# node NAME PORT FLAGS...: `serve` on $work/NAME at PORT in the background, its log in
# $work/NAME.log; sets NAME_pid and NAME_port once it listens.
node() {
  local name=$1 p=$2; shift 2
  "$bin" serve --port "$p" --data "$work/$name" --json "$@" >"$work/$name.log" 2>&1 &
  pids+=("$!"); printf -v "${name}_pid" '%s' "$!"
  p=$(listening_port "$work/$name.log") || { bad "$name did not start"; show "$work/$name.log"; exit 1; }
  printf -v "${name}_port" '%s' "$p"
}
fingerprint_of() { grep -o '"event":"listening"[^}]*"fingerprint":"[^"]*"' "$1" | grep -o 'SHA256:[^"]*'; }

# The cluster's key, made once by a first start and copied where the nodes read it.
start_server "$work/seed"
stop_server
install -m 600 "$work/seed/host_key" "$work/cluster_host_key"

run "a --host-key that does not exist is refused" 1 "$bin" serve --port 0 --data "$work/nokey" --host-key "$work/missing_key"
expect "…naming it" "host key: $work/missing_key does not exist; a key given with --host-key is never made"
check "…and nothing is made" test ! -e "$work/missing_key" -a ! -e "$work/nokey"
run "serve --check says so too" 1 "$bin" serve --check --port 0 --data "$work/nokey" --host-key "$work/missing_key"
expect "…as a FAIL line" "FAIL host-key: $work/missing_key does not exist"
run "serve --check on a new node's empty data directory checks the shared key" 0 "$bin" serve --check --port 0 --data "$work/a" --host-key "$work/cluster_host_key"
expect "…ok" "ok   host-key: $work/cluster_host_key is a host key, mode 0600"

node a 0 --host-key "$work/cluster_host_key"
node b 0 --host-key "$work/cluster_host_key"
node other 0
fa=$(fingerprint_of "$work/a.log"); fb=$(fingerprint_of "$work/b.log")
check "both nodes present the one key ($fa)" test -n "$fa" -a "$fa" = "$fb" -a "$fa" = "$(fingerprint_of "$work/server.log")"
check "…and neither made one of its own" test ! -e "$work/a/host_key" -a ! -e "$work/b/host_key"
check "…host_key.pub is beside each node's data" cmp -s "$work/a/host_key.pub" "$work/seed/host_key.pub"

cluster="127.0.0.1:$a_port,127.0.0.1:$b_port"
input="$PW"$'\n'
run "register at the cluster: the key is pinned once" 0 as alice "$bin" register alice --server "$cluster" --password-stdin --accept-new-host
expect "…under the first address" "registered alice at 127.0.0.1:$a_port"
check "…one line in known_hosts" test "$(grep -c . "$work/alice/known_hosts")" = 1
check "…config.toml keeps the whole list" grep -qF "server = \"$cluster\"" "$work/alice/config.toml"

kill -TERM "$a_pid"; wait "$a_pid" 2>/dev/null
cp "$work/alice/known_hosts" "$work/known_hosts.before"
input="$PW"$'\n'
run "the first node down: the second answers, its key accepted without a question" 0 as alice "$bin" register bob --server "$cluster" --password-stdin
expect "…it is the cluster, named by its first address" "registered bob at 127.0.0.1:$a_port"
check "…the node that answered was the second" grep -q '"event":"login","user":"bob"' "$work/b.log"
check "…known_hosts unchanged" cmp -s "$work/alice/known_hosts" "$work/known_hosts.before"

input="$PW"$'\n'
run "a node with another key is exit 4, even with a good one after it" 4 as alice "$bin" register carol --server "127.0.0.1:$a_port,127.0.0.1:$other_port,127.0.0.1:$b_port" --password-stdin
expect "…the host key changed" "has changed"
check "…nothing was registered on the good node after it" test "$(grep -c '"user":"carol"' "$work/b.log")" = 0

kill -TERM "$b_pid"; wait "$b_pid" 2>/dev/null
input="$PW"$'\n'
run "every node down: exit 1" 1 as alice "$bin" register dave --server "$cluster" --password-stdin
expect "…naming each address" "cannot connect to any of the 2 addresses of 127.0.0.1:$a_port: 127.0.0.1:$a_port: connection refused"
expect "…and why" "127.0.0.1:$b_port: connection refused"

# A line pending when the server stops answering (SIGSTOP) and dies (SIGKILL): the
# client sends it again to the restarted server, with its client message id,
# and it is in the room and in the transcript once.
start_server "$work/solo"
solo_port=$port
srv="127.0.0.1:$port"
register erin
chat_bg "$work/erin" erin erin
printf 'before the crash\n' >"$work/erin.in"
if wait_for "$work/erin.out" '^\{"type":"ack"'; then ok; else bad "erin: no first ack"; show "$work/erin.out" "$work/erin.err"; fi
kill -STOP "$server_pid"
printf 'while it was stopped\n' >"$work/erin.in"
if wait_for "$work/erin.out" '"type":"sent".*"while it was stopped"'; then ok; else bad "erin: the line was not sent"; fi
kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=""
start_server "$work/solo" "$solo_port"
if wait_for "$work/erin.out" '^\{"type":"ack"' 2; then ok; else bad "erin: the pending line was not acknowledged after the restart"; show "$work/erin.out" "$work/erin.err"; fi
check "…said to be sent again, not lost" grep -q 'will be sent again once reconnected' "$work/erin.err"
check "…no line reported unsent" test "$(grep -c '"type":"unsent"' "$work/erin.out")" = 0
printf 'after the restart\n' >"$work/erin.in"
if wait_for "$work/erin.out" '^\{"type":"ack"' 3; then ok; else bad "erin: no third ack"; fi
check "…its seqs are 1, 2, 3" test "$(grep '^{"type":"ack"' "$work/erin.out" | grep -o '"seq":[0-9]*' | tr '\n' ' ')" = '"seq":1 "seq":2 "seq":3 '
check "…the transcript holds the pending line once" test "$(cat "$work/solo/transcript/"*.jsonl | grep -c '"text":"while it was stopped"')" = 1
run "…and verifies" 0 "$bin" transcript verify "$work/solo/transcript" --host-key "$work/solo/host_key.pub"

finish failover.sh
