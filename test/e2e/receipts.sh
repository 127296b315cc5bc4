#!/usr/bin/env bash
# Receipts a user can hold (TRANSCRIPT.md Appendix A, PROTOCOL.md §7.13),
# through the binary: alice and bob chat with --transcript; each keeps a
# receipt per acknowledged message, and `transcript receipts` and
# `verify-proof` check them offline with the vkey serve printed. The
# server's data directory is then truncated, rewritten after a checkpoint,
# or swapped for a fork: a receipt forged to match the bad log fails
# verify-proof (exit 5), `follow --checkpoint` and `verify --checkpoint`
# with alice's remembered checkpoint fail (exit 5), and alice's next `chat`
# exits 6; the untouched log passes all of them.
set -uo pipefail
PW='correct horse battery staple'
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin
port=$(( 20000 + RANDOM % 20000 )) && srv="127.0.0.1:$port"
# chat WHO LINE...: a scripted chat with WHO's --transcript; its status in $rc.
chat() { local who=$1; shift; printf '%s\n' "$@" | as "$who" "$bin" chat --user "$who" --server "$srv" --json --transcript "$work/$who.jsonl" >"$work/$who.out" 2>"$work/$who.err"; rc=$?; }
count() { grep -c "\"kind\":\"$2\"" "$work/$1.jsonl"; }
# line_of FILE TSEQ: the entry's line a receipt in FILE carries.
line_of() { jq -j --argjson t "$2" 'select(.kind=="receipt" and .tseq==$t) | .proof' "$1" | sed -n 's/^extra //p' | base64 -d; }
# follow_check DIR CHECKPOINT: `follow --checkpoint` until it has caught up (then SIGTERM) or fails; its status in $rc, stderr in $out.
follow_check() {
  "$bin" transcript follow --data "$1" --from-end --checkpoint "$2" >/dev/null 2>"$work/follow.err" &
  local pid=$!
  for _ in $(seq 1 100); do grep -q "waiting for new ones" "$work/follow.err" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"; rc=$?
  out=$(cat "$work/follow.err")
}

start_server "$work/data" "$port"
vkey=$(grep -o '"vkey":"[^"]*"' "$work/server.log" | head -1 | cut -d'"' -f4)
check "serve prints the log's vkey" test -n "$vkey"
register alice
register bob
chat alice "hello from alice" "/me waves" "/msg bob a \"quoted\" secret"
check "alice's first chat: exit 0" test "$rc" = 0
stop_server
cp -r "$work/data" "$work/old"

start_server "$work/data" "$port"
chat bob "hi alice" "/msg alice got it"
check "bob's chat: exit 0" test "$rc" = 0
chat alice "second visit" "one more"
check "alice's second chat: exit 0" test "$rc" = 0
stop_server

check "alice kept a receipt for each of her 5 acknowledged messages" test "$(count alice ack)/$(count alice receipt)" = "5/5"
check "bob kept one for each of his 2" test "$(count bob ack)/$(count bob receipt)" = "2/2"
mode_is "alice's transcript with her receipts is 0600" "$work/alice.jsonl" 600
run "transcript receipts: every receipt of alice's verifies with the vkey alone" 0 "$bin" transcript receipts "$work/alice.jsonl" --vkey "$vkey"
expect "…one OK line each" 'OK '
check "…five of them" test "$(grep -c '^OK ' <<<"$out")" = 5
run "transcript receipts: bob's too" 0 "$bin" transcript receipts "$work/bob.jsonl" --vkey "$vkey"
tseq=$(jq -r 'select(.kind=="receipt") | .tseq' "$work/alice.jsonl" | sed -n 3p)
jq -j --argjson t "$tseq" 'select(.kind=="receipt" and .tseq==$t) | .proof' "$work/alice.jsonl" >"$work/alice.proof"
run "verify-proof: a receipt as stored, got out with jq -j, verifies" 0 "$bin" transcript verify-proof "$work/alice.proof" --vkey "$vkey"
expect "…and is alice's direct message to bob" '"text":"a \"quoted\" secret"'
line_of "$work/alice.jsonl" "$tseq" >"$work/alice.line"
# The transcript's files: on a cluster, its rows in PostgreSQL written out as files.
logdir="$work/data/transcript"
if [ -n "$e2e_cluster" ]; then logdir="$work/dbcopy"; transcript_export "$work/data" --directory "$logdir" >/dev/null 2>&1 || bad "export --database --directory"; fi
check "…whose line is the one the transcript holds" grep -qxF -f "$work/alice.line" <(cat "$logdir"/*.jsonl)
# Her last message, of her second visit: what the bad logs below lose or rewrite.
last=$(jq -r 'select(.kind=="receipt") | .tseq' "$work/alice.jsonl" | tail -1)
line_of "$work/alice.jsonl" "$last" >"$work/last.line"

# A receipt changed to say something else does not verify.
sed 's/a \\"quoted\\" secret/a public remark/' "$work/alice.line" | tr -d '\n' >"$work/forged.line"
run "verify-proof: the receipt with another line given for it fails (exit 5)" 5 "$bin" transcript verify-proof "$work/alice.proof" --vkey "$vkey" --entry "$work/forged.line"
jq -c --rawfile f "$work/forged.line" 'if .kind == "receipt" then (.proof | split("\n")) as $p
  | if ($p[1][6:] | @base64d | contains("quoted")) then .proof = ([$p[0], "extra " + ($f | @base64)] + $p[2:] | join("\n")) else . end
  else . end' "$work/alice.jsonl" >"$work/forged.jsonl"
run "transcript receipts: a receipt whose line was changed fails (exit 5)" 5 "$bin" transcript receipts "$work/forged.jsonl" --vkey "$vkey"
expect "…naming it" "FAIL "

single_node_only "receipts.sh: the truncated, rewritten and forked logs below are made by editing a single node's transcript files, and verify --checkpoint, follow and prove read a directory (on a cluster the log is rows in PostgreSQL: pglog.sh alters one)" || finish receipts.sh

evidence="$work/alice/checkpoints/$srv"
cp "$evidence" "$work/evidence.checkpoint"
size=$(sed -n 2p "$work/evidence.checkpoint")
run "verify --checkpoint: the untouched log extends alice's checkpoint" 0 "$bin" transcript verify "$work/data/transcript" --checkpoint "$work/evidence.checkpoint"
cp "$work/evidence.checkpoint" "$work/monitor.checkpoint"
follow_check "$work/data" "$work/monitor.checkpoint"
check "follow --checkpoint: the untouched log is followed (exit 0 on SIGTERM)" test "$rc" = 0
expect "…saying it extends the checkpoint" "the log extends the checkpoint in"
check "…and the monitor's file now holds the log's newest checkpoint" test "$(sed -n 2p "$work/monitor.checkpoint")" -ge "$size"

# bad NAME: the log in $work/NAME must fail every check, with alice's evidence.
bad_log() {
  local name=$1
  run "$name: verify --checkpoint fails (exit 5)" 5 "$bin" transcript verify "$work/$name/transcript" --checkpoint "$work/evidence.checkpoint"
  cp "$work/evidence.checkpoint" "$work/monitor.checkpoint"
  follow_check "$work/$name" "$work/monitor.checkpoint"
  check "$name: follow --checkpoint fails (exit 5)" test "$rc" = 5
  expect "$name: …with a FAIL line" "FAIL"
  check "$name: …and leaves the monitor's checkpoint as it was" cmp -s "$work/monitor.checkpoint" "$work/evidence.checkpoint"
  # A receipt from the bad log for alice's message: signed by the host key, but not of what she was acked.
  if "$bin" transcript prove --data "$work/$name" --seq "$last" >"$work/$name.proof" 2>/dev/null; then
    run "$name: verify-proof of the bad log's receipt for her message, with her line, fails (exit 5)" 5 "$bin" transcript verify-proof "$work/$name.proof" --vkey "$vkey" --entry "$work/last.line"
  else
    check "$name: the bad log cannot prove her message at all" true
  fi
  start_server "$work/$name" "$port"
  chat alice "am I still there?"
  check "$name: alice's next chat exits 6" test "$rc" = 6
  out=$(cat "$work/alice.err")
  expect "$name: …saying what it means" "this server's log"
  stop_server
  cp "$work/evidence.checkpoint" "$evidence"
}

# Truncated: cut back before alice's second visit (and the derived files rebuilt from what is left).
cp -r "$work/data" "$work/truncated"
first=$(ls "$work/truncated/transcript/"*.jsonl | head -1)
keep=$(( $(cat "$work"/old/transcript/*.jsonl | wc -l) + 2 ))
cat "$work"/truncated/transcript/*.jsonl | head -n "$keep" >"$work/cut.jsonl"
rm "$work"/truncated/transcript/*.jsonl "$work/truncated/tree.hashes" "$work"/truncated/history.db*
mv "$work/cut.jsonl" "$first"
bad_log truncated

# Rewritten after a checkpoint: the same cut, then other entries written on it and signed.
# (Bob writes them: his client is told to forget what it saw, as a colluding client would.)
cp -r "$work/truncated" "$work/rewritten"
start_server "$work/rewritten" "$port"
for i in 1 2 3; do rm -f "$work/bob/checkpoints/$srv"; chat bob "rewritten $i" "history $i"; done
stop_server
bad_log rewritten

# Swapped for a fork: the copy from before bob and alice's second visit, grown another way.
start_server "$work/old" "$port"
for i in 1 2 3 4 5; do rm -f "$work/bob/checkpoints/$srv"; chat bob "another story $i" "told $i"; done
stop_server
bad_log old

# The untouched log still passes, and alice chats on it.
start_server "$work/data" "$port"
chat alice "still here"
check "the untouched log: alice's chat exits 0" test "$rc" = 0
stop_server
run "…and every receipt she holds still verifies" 0 "$bin" transcript receipts "$work/alice.jsonl" --vkey "$vkey"

finish receipts.sh
