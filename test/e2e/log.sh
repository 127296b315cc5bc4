#!/usr/bin/env bash
# Rollback and fork detection at connect (PROTOCOL.md §7.13), through the
# binary: alice's client remembers the server's signed checkpoint; the server
# is then restarted on an older copy of its data directory (a rollback), and
# later on that copy grown with other entries (a fork). Each time alice's
# next `chat` refuses with exit 6 and says what it means, keeps what it
# remembered, and `transcript verify --checkpoint` with it fails on the copy
# and passes on the true log.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

PW='correct horse battery staple'
port=$(( 20000 + RANDOM % 20000 ))
srv="127.0.0.1:$port"
say() { local who=$1; shift; printf '%s\n' "$@" | as "$who" "$bin" chat --user "$who" --server "$srv" --json >"$work/$who.out" 2>"$work/$who.err"; }
remembered() { sed -n 2p "$work/alice/checkpoints/$srv"; }

start_server "$work/data" "$port"
register alice
say alice "first"
check "a first chat: exit 0" test $? = 0
stop_server
cp -r "$work/data" "$work/old"

start_server "$work/data" "$port"
say alice "second" "third"
check "a second chat: exit 0" test $? = 0
check "alice remembers a checkpoint of the log (0600), covering what she said" test "$(stat -c %a "$work/alice/checkpoints/$srv")" = 600
size=$(remembered)
check "…of more lines than the old copy's log has" test "$size" -gt "$(cat "$work"/old/transcript/*.jsonl | wc -l)"
stop_server

# A rollback: the server comes back on the older copy.
start_server "$work/old" "$port"
say alice "fourth"
rc=$?
check "after a rollback alice's chat exits 6" test "$rc" = 6
out=$(cat "$work/alice.err")
expect "…saying the log no longer contains what it showed her" "this server's log no longer contains what it showed you on"
check "…once, not once per surface (stderr)" test "$(grep -c "no longer contains what it showed you" "$work/alice.err")" = 1
expect "…with the sizes" "it had $size entries then"
expect "…and what to do with the evidence" "securechat transcript verify DIR --checkpoint FILE"
refute "…and nothing of hers was sent" '"type":"ack"'
check "what she remembered is kept" test "$(remembered)" = "$size"

# A fork: on the old copy, others talk on, past the size she remembers.
register bob
for i in 1 2 3 4; do say bob "other $i" "story $i"; done
say alice "fifth"
rc=$?
check "after a fork alice's chat exits 6" test "$rc" = 6
out=$(cat "$work/alice.err")
expect "…saying the log is not the one it showed her" "is not the one it showed you on"
stop_server

cp "$work/alice/checkpoints/$srv" "$work/evidence.checkpoint"
run "verify --checkpoint: the forked copy fails (exit 5)" 5 "$bin" transcript verify "$work/old/transcript" --checkpoint "$work/evidence.checkpoint"
expect "…as a fork" "a fork"
run "verify --checkpoint: the true log passes" 0 "$bin" transcript verify "$work/data/transcript" --checkpoint "$work/evidence.checkpoint"
expect "…and says it extends it" "the log extends the saved checkpoint"

# Publishing the log for monitors (c2sp.org/tlog-tiles): the true log, then the fork into the same directory.
run "tiles: the true log is published" 0 "$bin" transcript tiles --data "$work/data" --out "$work/www"
expect "…saying what it wrote" "wrote"
"$bin" transcript checkpoint --data "$work/data" >"$work/true.checkpoint" 2>/dev/null
check "…its checkpoint is the log's last signed one" cmp -s "$work/www/checkpoint" "$work/true.checkpoint"
check "…with the hash tiles" test -s "$(ls -d "$work"/www/tile/0/000* | head -1)"
check "…and no line of the chat without --entries" test ! -e "$work/www/tile/entries"
run "tiles: the fork into the same directory is refused (exit 5)" 5 "$bin" transcript tiles --data "$work/old" --out "$work/www"
expect "…as not extending what was published" "not a prefix of this log"
check "…and the published checkpoint is left as it was" cmp -s "$work/www/checkpoint" "$work/true.checkpoint"
run "tiles --entries: the lines too" 0 "$bin" transcript tiles --data "$work/data" --out "$work/www" --entries
check "…in entry bundles" test -s "$(ls -d "$work"/www/tile/entries/000* | head -1)"

# Accepting the log as it is now: remove what was remembered.
rm "$work/alice/checkpoints/$srv"
start_server "$work/old" "$port"
say alice "sixth"
check "with the checkpoint removed, alice chats with the server as it is (exit 0)" test $? = 0
stop_server

finish log.sh
