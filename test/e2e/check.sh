#!/usr/bin/env bash
# Drives `serve --check` through the compiled binary: a fresh data directory,
# one a server left (stopped, then running: its pid reported, the address it
# holds not a failure), a bad flag (exit 2 as serve), a port in use, an admin
# that does not exist, an unreachable witness, --json; and the data directory
# byte for byte as it was after each check.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin
PW="check the data directory twice"

# tree_digest DIR: every file's path, mode and content, hashed.
tree_digest() { (cd "$1" && find . -print0 | sort -z | xargs -0 stat -c '%n %a %s' && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum; }

run "a fresh data directory checks ok" 0 "$bin" serve --check --port 0 --data "$work/fresh"
expect "…says it will be made" "ok   data: $work/fresh does not exist; the server will make it (0700)"
expect "…and the address can be listened on" "ok   listen: 127.0.0.1:0 can be listened on"
check "…and makes nothing" test ! -e "$work/fresh"

run "a bad flag is a usage error, as for serve" 2 "$bin" serve --check --port 70000 --data "$work/fresh"

start_server "$work/data"
run "a running server, --admin of no account: only that check fails" 1 "$bin" serve --check --port "$port" --data "$work/data" --admin root
expect "…reports its pid" "ok   lock: a server (pid $server_pid) is running on this directory"
expect "…its address is not a failure" "ok   listen: 127.0.0.1:$port is in use, presumably by the server running on this directory"
expect "…root does not exist yet" "FAIL admin root: no such account"
srv="127.0.0.1:$port"
register root
stop_server
before=$(tree_digest "$work/data")

run "the stopped server's directory checks ok" 0 "$bin" serve --check --port 0 --data "$work/data" --admin root
expect "…no server" "ok   lock: no server is running on this directory"
expect "…the host key" "ok   host-key: $work/data/host_key is a host key, mode 0600"
expect "…the transcript verifies" "the tail verifies from the last checkpoint"
expect "…the tree matches" "ok   tree: tree.hashes matches the root the last checkpoint signs"
expect "…history.db" "ok   history:"
expect "…the admin exists" "ok   admin root: the account exists"
refute "…no secret of the host key" "$(cut -d' ' -f2 "$work/data/host_key")"
check "…and leaves the data directory byte for byte as it was" test "$(tree_digest "$work/data")" = "$before"

run "--json: one object per check" 0 "$bin" serve --check --port 0 --data "$work/data" --json
check "…each line parses, with check, status and message" bash -c 'while read -r l; do jq -e ".check and .status and .message" <<<"$l" >/dev/null || exit 1; done <<<"$1"' _ "$out"

"$bin" serve --port 0 --data "$work/other" --json >"$work/other.log" 2>&1 & pids+=("$!")
busy=$(listening_port "$work/other.log") || bad "the other server did not start"
run "a port another program holds fails" 1 "$bin" serve --check --port "$busy" --data "$work/data"
expect "…naming the address" "FAIL listen: cannot listen on 127.0.0.1:$busy: the address is in use"
expect "…and the count on stderr" "serve --check: 1 of"

logvkey=$(grep -o '"event":"listening".*' "$work/other.log" | grep -o '"vkey":"[^"]*"' | cut -d'"' -f4)
"$bin" transcript witness --data "$work/w" --listen 127.0.0.1:0 --log "$logvkey" --json >"$work/w.log" 2>&1 & wpid=$!; pids+=("$wpid")
wait_for "$work/w.log" '"event":"witness_listening"' || bad "the witness did not start"
wline=$(grep -o '"event":"witness_listening".*' "$work/w.log")
wvkey=$(grep -o '"vkey":"[^"]*"' <<<"$wline" | cut -d'"' -f4)
waddr=$(grep -o '127\.0\.0\.1:[0-9]*' <<<"$wline" | head -1)
run "a witness that listens checks ok" 0 "$bin" serve --check --port 0 --data "$work/data" --witness "http://$waddr=$wvkey"
expect "…says it accepts connections" "http://$waddr accepts connections"
kill -TERM "$wpid"; wait "$wpid" 2>/dev/null
run "an unreachable witness fails" 1 "$bin" serve --check --port 0 --data "$work/data" --witness "http://$waddr=$wvkey"
expect "…names it, with what to do" "http://$waddr cannot be reached"
expect "…with what to do" "start the witness, or fix its URL"

chmod 644 "$work/data/host_key"
run "a host key 0644 fails" 1 "$bin" serve --check --port 0 --data "$work/data"
expect "…saying what to do" "FAIL host-key: $work/data/host_key has mode 0644"
chmod 600 "$work/data/host_key"

check "after all that, the data directory is as it was" test "$(tree_digest "$work/data")" = "$before"
finish check
