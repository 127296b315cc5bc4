#!/usr/bin/env bash
# A cluster through the compiled binary: two `serve` nodes on one PostgreSQL
# and one Redis (test/e2e/engines.ts; the URLs reach the binary only through
# its environment), one --host-key. One node holds the writer lease and runs
# the chat core; two users, each on a node, chat across them with `chat
# --json`; the core is killed with kill -9, the other node takes the lease,
# the clients fail over or reconnect and go on, every acknowledged line seen
# once; `transcript verify --database` passes. Then a laptop enrolls on a
# third node and is approved through the core's node, chats, and is revoked:
# its chat ends. No password is logged.
# Skipped, loudly, only where the engines are not installed (a failure under CI=true).
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin
PW="one cluster for two herons"

bun "$(dirname "$0")/engines.ts" "$work/engines.env" >"$work/engines.log" 2>&1 & epid=$!; pids+=("$epid")
# initdb takes a while on a loaded machine: up to 120 s.
for _ in $(seq 1 1200); do grep -qE '^(ready|missing)' "$work/engines.log" && break; kill -0 "$epid" 2>/dev/null || break; sleep 0.1; done
if grep -q '^missing' "$work/engines.log"; then
  if [ "${CI:-}" = true ]; then echo "FAIL cluster.sh: postgresql and redis-server are not installed"; exit 1; fi
  echo "!!! SKIPPING cluster.sh: postgresql and/or redis-server not installed (sudo apt-get install -y postgresql redis-server)"; exit 0
fi
grep -q '^ready' "$work/engines.log" || { bad "the engines did not start"; show "$work/engines.log"; finish cluster.sh; }
set -a; . "$work/engines.env"; set +a
pgpw=$(sed -n 's|^SECURECHAT_DATABASE_URL=postgres://[^:]*:\([^@]*\)@.*|\1|p' "$work/engines.env")
rdpw=$(sed -n 's|^SECURECHAT_REDIS_URL=redis://:\([^@]*\)@.*|\1|p' "$work/engines.env")

# wait_long FILE PATTERN: wait_for, for up to 40 s (a takeover: the lease, then reconnects).
wait_long() { wait_for "$1" "$2" 1 400; }

# The cluster's key, made once by a single node and copied where the nodes read it.
start_server "$work/seed"
stop_server
install -m 600 "$work/seed/host_key" "$work/cluster_host_key"
fp=$(grep -o '"fingerprint":"SHA256:[^"]*' "$work/server.log" | head -1 | grep -o 'SHA256:.*')

# node NAME: a cluster node on $work/NAME, any free port, its log in $work/NAME.log; sets NAME_pid and NAME_port.
node() {
  "$bin" serve --port 0 --data "$work/$1" --host-key "$work/cluster_host_key" --json >"$work/$1.log" 2>&1 &
  pids+=("$!"); printf -v "${1}_pid" '%s' "$!"
  local p
  p=$(listening_port "$work/$1.log") || { bad "$1 did not start"; show "$work/$1.log"; finish cluster.sh; }
  printf -v "${1}_port" '%s' "$p"
}
node a
check "a is elected the core at its start" wait_for "$work/a.log" '"event":"core_elected".*"epoch":'
node b
check "each node says it is a cluster node, the URLs without their passwords" grep -q '"event":"cluster_node".*"database":"postgres://postgres:\*\*\*@' "$work/b.log"
check "…b is not the core" test "$(grep -c '"event":"core_elected"' "$work/b.log")" = 0
check "both present the cluster's one key" test "$(grep -c "\"fingerprint\":\"$fp\"" "$work/a.log" "$work/b.log" | grep -c ':[1-9]')" = 2

# alice is on a (first in her list), bob on b.
srv="127.0.0.1:$a_port,127.0.0.1:$b_port"
register alice
srv="127.0.0.1:$b_port,127.0.0.1:$a_port"
register bob
srv="127.0.0.1:$a_port,127.0.0.1:$b_port"
chat_bg "$work/alice" alice alice
srv="127.0.0.1:$b_port,127.0.0.1:$a_port"
chat_bg "$work/bob" bob bob
check "alice logged in on a" grep -q '"event":"login","user":"alice"' "$work/a.log"
check "bob logged in on b" grep -q '"event":"login","user":"bob"' "$work/b.log"

printf 'one from alice on a\n' >"$work/alice.in"
check "bob, on b, sees alice's line" wait_for "$work/bob.out" '"type":"message".*"text":"one from alice on a"'
printf 'two from bob on b\n' >"$work/bob.in"
check "alice, on a, sees bob's line" wait_for "$work/alice.out" '"type":"message".*"text":"two from bob on b"'
printf '/msg bob a direct one across nodes\n' >"$work/alice.in"
check "a DM crosses the nodes" wait_for "$work/bob.out" '"type":"direct".*"text":"a direct one across nodes"'
printf 'three from alice before the crash\n' >"$work/alice.in"
check "…acknowledged" wait_for "$work/alice.out" '^\{"type":"ack"' 3
check "…and seen by bob" wait_for "$work/bob.out" '"text":"three from alice before the crash"'

# The core dies. b takes the lease within its bound; bob's session on b ends
# (core_changed) and he reconnects to b; alice's client fails over to b.
kill -9 "$a_pid"; wait "$a_pid" 2>/dev/null
if wait_long "$work/b.log" '"event":"core_elected"'; then ok; else bad "b did not become the core"; show "$work/b.log"; fi
printf 'four from alice after the crash\n' >"$work/alice.in"
if wait_long "$work/bob.out" '"text":"four from alice after the crash"'; then ok; else bad "bob did not see alice's line after the takeover"; show "$work/alice.out" "$work/alice.err" "$work/bob.out" "$work/bob.err"; fi
printf 'five from bob after the crash\n' >"$work/bob.in"
if wait_long "$work/alice.out" '"text":"five from bob after the crash"'; then ok; else bad "alice did not see bob's line after the takeover"; show "$work/alice.out" "$work/bob.err"; fi
for t in "one from alice on a" "three from alice before the crash" "four from alice after the crash"; do
  check "bob saw \"$t\" once" test "$(grep '"type":"message"' "$work/bob.out" | grep -cF "\"text\":\"$t\"")" = 1
done
for t in "two from bob on b" "five from bob after the crash"; do
  check "alice saw \"$t\" once" test "$(grep '"type":"message"' "$work/alice.out" | grep -cF "\"text\":\"$t\"")" = 1
done
check "bob was told the core moved (core_changed), and reconnected" grep -q "(core_changed)" "$work/bob.err"
check "…alice's four acks, seqs 1 to 4 in the room (and the DM's)" test "$(grep '^{"type":"ack"' "$work/alice.out" | grep -c .)" = 4
check "no line of alice's reported unsent" test "$(grep -c '"type":"unsent"' "$work/alice.out")" = 0

run "the transcript in PostgreSQL verifies" 0 "$bin" transcript verify --host-key "$fp"
expect "…PASS" "PASS: "
# Devices across nodes: a laptop enrolls on a third node c (not the core),
# alice approves its code from her machine (her nodes: a, dead, then b, the
# core); the laptop chats through c; alice revokes it, and its chat on c ends.
node c
printf '%s\n' "$PW" | env SECURECHAT_HOME="$work/laptop" NO_COLOR=1 timeout 60 "$bin" device add -u alice --name "laptop" --server "127.0.0.1:$c_port" --password-stdin --accept-new-host >"$work/add.out" 2>"$work/add.err" &
add_pid=$!; pids+=("$add_pid")
if wait_for "$work/add.out" '^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$' 1 300; then ok; else bad "device add on c printed no code"; show "$work/add.out" "$work/add.err" "$work/c.log"; fi
code=$(head -1 "$work/add.out")
input="$PW"$'\n'
run "alice approves the laptop's code from her machine, through b" 0 as alice "$bin" device approve "$code" --password-stdin --yes
if wait_exit "$add_pid" 100 && [ "$rc" = 0 ]; then ok; else bad "device add: exit $rc after the approval, want 0"; show "$work/add.err" "$work/c.log"; fi
laptop_id=$(grep -o 'now device [0-9a-f]\{12\}' "$work/add.err" | grep -o '[0-9a-f]\{12\}')
check "the laptop waited on c, and was let in there" grep -q '"event":"login","user":"alice".*"method":"password"' "$work/c.log"
srv="127.0.0.1:$c_port"
chat_bg "$work/laptop" alice laptop
input="$PW"$'\n'
run "alice revokes the laptop from her machine" 0 as alice "$bin" device revoke "$laptop_id" --password-stdin
expect "…its live session on c ended" "1 live session ended"
if wait_exit "$laptop_pid" 100 && [ "$rc" = 1 ]; then ok; else bad "the laptop's chat: exit $rc after the revocation, want 1"; show "$work/laptop.out" "$work/laptop.err"; fi
check "…told device_revoked" grep -q '"code":"device_revoked"' "$work/laptop.out"
input=""
if "$bin" transcript export >"$work/export.jsonl" 2>"$work/export.err"; then ok; else bad "transcript export (the cluster's)"; show "$work/export.err"; fi
check "the laptop's enrollment is in the cluster's transcript, approved from alice's machine" \
  jq -e -s --arg d "$laptop_id" 'any(.[]; .type == "device_enrolled" and .user == "alice" and .device == $d and .name == "laptop" and (.sig | length) > 0)' "$work/export.jsonl" >/dev/null
check "…and its revocation" jq -e -s --arg d "$laptop_id" 'any(.[]; .type == "device_revoked" and .user == "alice" and .device == $d)' "$work/export.jsonl" >/dev/null

check "no node logged a password" test "$(cat "$work/a.log" "$work/b.log" "$work/c.log" | grep -cF -e "$pgpw" -e "$rdpw")" = 0

finish cluster.sh
