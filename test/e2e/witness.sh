#!/usr/bin/env bash
# Witnesses (TRANSCRIPT.md §4.5, PROTOCOL.md §7.13), through the binary: a
# server submits its checkpoints to two witnesses (transcript witness) and
# keeps their cosignatures; two users chat and the cosigned checkpoint
# appears and verifies; `chat --witness-quorum` passes with the quorum and
# exits 6 without it; a witness that is down makes the server say that its
# quorum is missing; and a witness shown the server's log rolled back, then
# forked, refuses it (409, 422) while the server reports it at error level.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

PW='correct horse battery staple'
# Fixed ports: the server's address is what clients remember it by, and each witness comes back where it was.
port=$(( 20000 + RANDOM % 20000 )) wport1=$(( port + 1 )) wport2=$(( port + 2 ))
srv="127.0.0.1:$port"
as() { local h=$1; shift; env SECURECHAT_HOME="$work/$h" NO_COLOR=1 timeout 60 "$@"; }
register() { printf '%s\n' "$PW" | as "$1" "$bin" register "$1" --server "$srv" --password-stdin --accept-new-host >/dev/null 2>&1 || bad "register $1"; }
say() { local who=$1; shift; printf '%s\n' "$@" | as "$who" "$bin" chat --user "$who" --server "$srv" --json "${chat_flags[@]}" >"$work/$who.out" 2>"$work/$who.err"; }
chat_flags=()
vkey_of() { grep -o "\"event\":\"$2\".*" "$1" | grep -o '"vkey":"[^"]*"' | head -1 | cut -d'"' -f4; }

# start_witness N PORT: witness N in the background on PORT, witnessing the log; sets wvkeyN.
start_witness() {
  : >"$work/w$1.log"
  "$bin" transcript witness --data "$work/w$1" --listen "127.0.0.1:$2" --log "$vkey" --json >"$work/w$1.log" 2>&1 &
  printf -v "w$1_pid" '%s' "$!"
  pids+=("$!")
  wait_for "$work/w$1.log" '"event":"witness_listening"' || { bad "witness $1 did not start"; show "$work/w$1.log"; exit 1; }
  printf -v "wvkey$1" '%s' "$(vkey_of "$work/w$1.log" witness_listening)"
}
stop_witness() { local p="w$1_pid"; kill -TERM "${!p}"; wait "${!p}" 2>/dev/null; }

# The server's log key, from a first start.
start_server "$work/data" "$port"
vkey=$(vkey_of "$work/server.log" listening)
stop_server
start_witness 1 "$wport1"
start_witness 2 "$wport2"
check "each witness made its key 0600" test "$(stat -c %a "$work/w1/witness_key")" = 600
check "…and printed its vkey (type 0x04)" test -n "$wvkey1" -a -n "$wvkey2" -a "$wvkey1" != "$wvkey2"
run "a second witness on witness 1's state directory is refused (two would cosign from two memories)" 1 timeout 10 "$bin" transcript witness --data "$work/w1" --listen 127.0.0.1:0 --log "$vkey"
expect "…naming the running one" "is in use by another securechat witness (pid"
# A third witness key the server never submits to: a quorum that needs it cannot be met.
"$bin" transcript witness --data "$work/w3" --listen 127.0.0.1:0 --log "$vkey" --json >"$work/w3.log" 2>&1 &
w3=$!; pids+=("$w3")
wait_for "$work/w3.log" '"event":"witness_listening"'
wvkey3=$(vkey_of "$work/w3.log" witness_listening)
kill -TERM "$w3"

witnessed=(--witness "http://127.0.0.1:$wport1=$wvkey1" --witness "http://127.0.0.1:$wport2=$wvkey2" --witness-grace 2s --checkpoint-interval 1s)
start_server "$work/data" "$port" "${witnessed[@]}"
register alice
register bob
say alice "hello bob"
check "alice chats: exit 0" test $? = 0
say bob "hello alice"
check "bob chats: exit 0" test $? = 0
check "the server logged both witnesses' cosignatures" wait_for "$work/server.log" '"event":"witness_cosigned"' 2
run "transcript checkpoint --cosigned prints the cosigned checkpoint" 0 "$bin" transcript checkpoint --cosigned --data "$work/data"
expect "…with the first witness's cosignature" "— ${wvkey1%%+*} "
expect "…and the second's" "— ${wvkey2%%+*} "
"$bin" transcript checkpoint --cosigned --data "$work/data" >"$work/cosigned.checkpoint" 2>/dev/null
mode_is "DATA/cosigned.checkpoint is 0600" "$work/data/cosigned.checkpoint" 600
run "verify --checkpoint with both witnesses required: passes" 0 "$bin" transcript verify "$work/data/transcript" --checkpoint "$work/cosigned.checkpoint" --witness "$wvkey1" --witness "$wvkey2"
run "verify --checkpoint requiring a witness that never cosigned: exit 5" 5 "$bin" transcript verify "$work/data/transcript" --checkpoint "$work/cosigned.checkpoint" --witness "$wvkey1" --witness "$wvkey3"
expect "…as unwitnessed" "valid cosignatures of 1 of the 2 witness(es) given, and 2 are required"

chat_flags=(--witness "$wvkey1" --witness "$wvkey2")
say alice "with my witnesses"
check "chat --witness W1 --witness W2 (quorum: both): exit 0" test $? = 0
chat_flags=(--witness "$wvkey1" --witness "$wvkey3" --witness-quorum 2)
say alice "with a witness the server does not use"
check "chat requiring a witness the server does not use: exit 6" test $? = 6
out=$(cat "$work/alice.err")
expect "…saying the log is not vouched for" "is not vouched for by 2 of your 2 witness(es): only 1 of them cosigned"
refute "…and nothing was sent" '"type":"ack"'
chat_flags=(--witness "$wvkey1" --witness "$wvkey3" --witness-quorum 1)
say alice "one of them is enough"
check "…with --witness-quorum 1 it passes (exit 0)" test $? = 0

# A witness down: the server says its quorum is missing, and a client that needs both refuses.
stop_witness 2
chat_flags=()
say alice "while a witness is down"
check "chat goes on while a witness is down (exit 0)" test $? = 0
check "the server logs the witness as unreachable" wait_for "$work/server.log" '"event":"witness_unreachable"'
check "…and, past the grace, witness_quorum_missing at error level" wait_for "$work/server.log" '"level":"error","event":"witness_quorum_missing"'
chat_flags=(--witness "$wvkey1" --witness "$wvkey2")
say alice "do my witnesses know?"
check "chat requiring both witnesses now exits 6" test $? = 6
out=$(cat "$work/alice.err")
expect "…saying the witnesses have not seen what she was shown" "fewer than the"
start_witness 2 "$wport2"
check "with the witness back, the server gets its quorum again" wait_for "$work/server.log" '"event":"witness_quorum_restored"'
say alice "and now?"
check "…and the client that needs both passes again (exit 0)" test $? = 0
chat_flags=()
stop_server

# A rollback: the server restarted on an older copy of its data directory.
cp -r "$work/data" "$work/old"
start_server "$work/data" "$port" "${witnessed[@]}"
say bob "more" "and more" "so the witnesses see a larger log"
check "the witnesses cosign the grown log" wait_for "$work/server.log" '"event":"witness_cosigned"' 2
sleep 1.5 # the last checkpoint (checkpoint-interval 1s), and its round
stop_server
start_server "$work/old" "$port" "${witnessed[@]}"
check "on the rolled-back copy: witness_conflict at error level" wait_for "$work/server.log" '"level":"error","event":"witness_conflict"'
out=$(cat "$work/server.log")
expect "…saying what it means" "this log was rolled back or replaced since"
check "…the witness logged the refused rollback (409)" wait_for "$work/w1.log" '"event":"witness_refused".*"status":409'
check "…and the server says its quorum is missing" wait_for "$work/server.log" '"level":"error","event":"witness_quorum_missing"'

# A fork: the old copy grown past what the witnesses cosigned, with other entries.
for i in 1 2 3 4 5 6; do say alice "another story $i" "told $i"; done
check "on the forked copy: the witnesses answer 422, witness_conflict at error level" wait_for "$work/server.log" '"level":"error","event":"witness_conflict","witness":"[^"]*","status":422'
out=$(cat "$work/server.log")
expect "…saying what it means" "this log was forked or rewritten"
check "…the witness logged the inconsistent checkpoint" wait_for "$work/w1.log" '"event":"witness_inconsistent"'
stop_server

finish witness.sh
