#!/usr/bin/env bash
# Drives `serve --check` through the compiled binary: a fresh data directory,
# one a server left (stopped, then running: its pid reported, the address it
# holds not a failure), a bad flag (exit 2 as serve), a port in use, an admin
# that does not exist, an unreachable witness, --json; and the data directory
# byte for byte as it was after each check; then a cluster node's engines
# (real PostgreSQL and Redis, URLs only in the environment): checked ok,
# their failures named, no password printed, and serve itself refusing them.
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

# A cluster node's engines. The URLs (with passwords) reach the binary only through its environment.
bun "$(dirname "$0")/engines.ts" "$work/engines.env" >"$work/engines.log" 2>&1 & epid=$!; pids+=("$epid")
# initdb takes a while on a loaded machine: up to 120 s.
for _ in $(seq 1 1200); do grep -qE '^(ready|missing)' "$work/engines.log" && break; kill -0 "$epid" 2>/dev/null || break; sleep 0.1; done
if grep -q '^missing' "$work/engines.log"; then
  echo "SKIP: the engine checks (postgresql and redis-server are not installed)"
elif ! grep -q '^ready' "$work/engines.log"; then
  bad "the engines did not start"; show "$work/engines.log"
else
  set -a; . "$work/engines.env"; set +a
  pgpw=$(sed -n 's|^SECURECHAT_DATABASE_URL=postgres://[^:]*:\([^@]*\)@.*|\1|p' "$work/engines.env")
  rdpw=$(sed -n 's|^SECURECHAT_REDIS_URL=redis://:\([^@]*\)@.*|\1|p' "$work/engines.env")
  run "the engines check ok (a fresh database only warns: the first node makes its tables)" 0 "$bin" serve --check --port 0 --data "$work/data"
  expect "…PostgreSQL, its version" "ok   postgres: postgres://postgres:***@127.0.0.1:$PG_PORT/postgres answers: PostgreSQL"
  expect "…synchronous_commit" "ok   postgres-commit: synchronous_commit is on"
  expect "…the schema, steps to run" "warn schema accounts: "
  expect "…Redis, its version" "ok   redis: redis://:***@127.0.0.1:$REDIS_PORT answers: Redis"
  expect "…its eviction policy" "ok   redis-eviction: maxmemory-policy is noeviction"
  refute "…without the database password" "$pgpw"
  refute "…without the Redis password" "$rdpw"
  run "one engine alone is a usage error" 2 env -u SECURECHAT_REDIS_URL "$bin" serve --check --port 0 --data "$work/data"
  expect "…saying why" "PostgreSQL is given without --redis (or SECURECHAT_REDIS_URL)"
  run "a wrong Redis password fails that check" 1 env SECURECHAT_REDIS_URL="redis://:not-it-e2e@127.0.0.1:$REDIS_PORT" "$bin" serve --check --port 0 --data "$work/data"
  expect "…naming it" "FAIL redis: redis://:***@127.0.0.1:$REDIS_PORT cannot be used: WRONGPASS"
  refute "…without the password tried" "not-it-e2e"
  run "a URL in argv works, with a warning" 0 env -u SECURECHAT_DATABASE_URL "$bin" serve --check --port 0 --data "$work/data" --database "$SECURECHAT_DATABASE_URL"
  expect "…pointing to the environment" "warning: --database holds a password, which every user of this machine can read with ps; set SECURECHAT_DATABASE_URL instead"
  refute "…without echoing it" "$pgpw"
  unset SECURECHAT_DATABASE_URL SECURECHAT_REDIS_URL
fi
check "the engine checks left the data directory as it was" test "$(tree_digest "$work/data")" = "$before"
finish check
