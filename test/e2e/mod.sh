#!/usr/bin/env bash
# Drives the compiled binary through room moderation (docs/PROTOCOL.md §7.9)
# as five people on five machines would, with scripted `chat --json` runs:
# alice creates #ops (so owns it), sets a topic and ops bob; carol, in the
# room, is kicked with a reason (her client sees why), then banned and cannot
# rejoin; dave is muted and his line is refused; +i refuses erin until she
# is invited; +s hides the room from /rooms of someone outside it. The
# server is restarted on the same data and port: the topic, ops, bans, mutes,
# invites and modes are still there. `transcript export | jq` shows every
# action with who did it and from which session; `transcript verify` passes.
# Everything lives in a temporary directory; every process started here is
# stopped by its own PID on every exit path; every wait is bounded.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

# as USER command...: with USER's own client state directory ("machine"), never for more than 60 s.
as() { local u=$1; shift; env SECURECHAT_HOME="$work/home-$u" NO_COLOR=1 timeout 60 "$@"; }

# say USER ROOM LINES [NAME]: pipes LINES (one per \n) into `chat --json` in ROOM as USER;
# the output in $work/NAME.out (NAME defaults to USER), the exit status in $rc.
say() {
  local u=$1 room=$2 lines=$3 name=${4:-$1}
  printf '%s\n' "$lines" | as "$u" "$bin" chat --server "$srv" --room "$room" --json >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
}
# has NAME FILE EXTENDED-REGEX: passes when a line of FILE matches.
has() { if grep -qE -- "$3" "$2"; then ok; else bad "$1: no line matching $3"; show "$2"; fi; }
# hasnt NAME FILE EXTENDED-REGEX: passes when no line of FILE matches.
hasnt() { if grep -qE -- "$3" "$2"; then bad "$1: a line matches $3"; show "$2"; else ok; fi; }

start_server "$work/data"
srv="127.0.0.1:$port"

declare -A pw=([alice]="correct horse battery staple" [bob]="bright orange kites over hills" [carol]="purple elephants dance at noon" [dave]="seven quiet rivers under snow" [erin]="a lantern in the foggy harbour")
for u in alice bob carol dave erin; do
  input="${pw[$u]}"$'\n'
  run "register $u" 0 as "$u" "$bin" register "$u" --server "$srv" --password-stdin --accept-new-host
done

# carol listens in #lobby, then joins #ops once alice has made it (a fifo holds her stdin open).
mkfifo "$work/carol.in"
sleep 300 >"$work/carol.in" &
carol_holder=$!
pids+=("$carol_holder")

# --- alice creates #ops: she owns it; a topic and an operator ---------------------------------
say alice ops $'/topic release friday — no deploys\n/op bob' alice1
check "alice's first run ends well (exit $rc)" [ "$rc" = 0 ]
has "alice owns #ops" "$work/alice1.out" '^\{"type":"room","room":"ops","users":\["alice"\],"seq":0,"owner":"alice"'
has "alice sees her topic" "$work/alice1.out" '"type":"room_changed","room":"ops","by":"alice","action":"topic","text":"release friday — no deploys"'
has "alice sees bob made an op" "$work/alice1.out" '"type":"room_changed","room":"ops","by":"alice","action":"op","user":"bob"'
# alice has left: #ops stays, with 0 users, because it has settings.
say bob lobby '/rooms' bob1
has "#ops stays, with 0 users" "$work/bob1.out" '"type":"room_list","rooms":\[[^]]*\{"name":"ops","users":0\}'

as carol "$bin" chat --server "$srv" --room ops --json <"$work/carol.in" >"$work/carol.out" 2>"$work/carol.err" &
carol_pid=$!
pids+=("$carol_pid")
if wait_for "$work/carol.out" '^\{"type":"room","room":"ops"'; then ok; else bad "carol: no room event"; show "$work/carol.out" "$work/carol.err"; fi
has "carol is shown the topic and the owner on joining" "$work/carol.out" '"type":"room","room":"ops".*"owner":"alice","ops":\["bob"\],"topic":"release friday — no deploys","persistent":true'

# --- bob (an op) kicks carol with a reason; she sees why and is out ------------------------------
say bob ops $'/kick alice\n/kick carol spamming the channel' bob2
has "an op may not kick the owner" "$work/bob2.out" '"type":"notice","code":"protected_user"'
has "bob sees the kick" "$work/bob2.out" '"action":"kick","user":"carol","text":"spamming the channel"'
if wait_for "$work/carol.out" '"action":"kick"'; then ok; else bad "carol never saw her kick"; fi
has "carol sees who kicked her and why" "$work/carol.out" '"type":"room_changed","room":"ops","by":"bob","action":"kick","user":"carol","text":"spamming the channel"'
kill -TERM "$carol_holder"; wait "$carol_holder" 2>/dev/null
wait_exit "$carol_pid" || bad "carol's client did not end"

# --- alice bans carol: she cannot rejoin ---------------------------------------------------------
say alice ops $'/ban carol\n/bans' alice2
has "alice sees the ban" "$work/alice2.out" '"by":"alice","action":"ban","user":"carol"'
has "/bans lists carol" "$work/alice2.out" '"type":"ban_list","room":"ops","bans":\["carol"\]'
say carol ops 'let me back in' carol2
check "carol's join is refused (exit $rc, not 0)" [ "$rc" != 0 ]
has "carol is told she is banned" "$work/carol2.out" '"type":"notice","code":"banned"'
hasnt "carol never got into #ops" "$work/carol2.out" '"type":"room","room":"ops"'

# --- dave is muted: he may read, his line is refused ---------------------------------------------
say alice ops '/mute dave' alice3
has "alice sees dave muted" "$work/alice3.out" '"action":"mute","user":"dave"'
say dave ops 'can anyone hear me' dave1
has "dave joins, muted" "$work/dave1.out" '"type":"room","room":"ops".*"muted":true'
has "dave's line is refused: muted" "$work/dave1.out" '"type":"nack","id":1,"code":"muted"'

# --- +i: erin is refused until invited ----------------------------------------------------------
say alice ops '/mode +i' alice4
has "alice sets +i" "$work/alice4.out" '"action":"mode","invite_only":true'
say erin ops 'hello?' erin1
has "erin is refused: invite-only" "$work/erin1.out" '"type":"notice","code":"invite_only"'
say bob ops $'/invite erin\n/invite dave' bob3
has "bob invites erin" "$work/bob3.out" '"action":"invite","user":"erin"'
say erin ops 'thanks for the invite' erin2
check "erin's run ends well once invited (exit $rc)" [ "$rc" = 0 ]
has "erin gets in" "$work/erin2.out" '"type":"room","room":"ops".*"invite_only":true'
has "erin's line is acknowledged" "$work/erin2.out" '"type":"ack","id":1'

# --- +s: hidden from /rooms of someone outside it ------------------------------------------------
say alice ops '/mode +s' alice5
has "alice sets +s" "$work/alice5.out" '"action":"mode","secret":true'
say carol lobby '/rooms' carol3
has "carol's /rooms answers" "$work/carol3.out" '"type":"room_list"'
hasnt "carol's /rooms does not list #ops" "$work/carol3.out" '"name":"ops"'
say bob lobby '/rooms' bob4
has "bob, an op of #ops, still sees it" "$work/bob4.out" '"name":"ops"'

# --- a restart: everything is still there --------------------------------------------------------
stop_server
start_server "$work/data" "$port"
say bob ops '/bans' bob5
has "after the restart: topic, owner, ops, modes" "$work/bob5.out" '"type":"room","room":"ops","users":\["bob"\],"seq":1,"owner":"alice","ops":\["bob"\],"topic":"release friday — no deploys","invite_only":true,"secret":true,"persistent":true'
has "after the restart: carol still banned" "$work/bob5.out" '"type":"ban_list","room":"ops","bans":\["carol"\]'
say carol ops 'again' carol4
has "after the restart: carol still refused" "$work/carol4.out" '"type":"notice","code":"banned"'
say dave ops 'still muted?' dave2
has "after the restart: dave still muted" "$work/dave2.out" '"type":"nack","id":1,"code":"muted"'
say erin ops 'back again' erin3
has "after the restart: erin still invited" "$work/erin3.out" '"type":"ack","id":1'
say carol lobby '/rooms' carol5
hasnt "after the restart: #ops still secret" "$work/carol5.out" '"name":"ops"'
stop_server

# --- the transcript: every action, who did it, from which session; verify passes -----------------
transcript_export "$work/data" --room ops >"$work/export.jsonl" 2>"$work/export.err"
if [ "$?" = 0 ]; then ok; else bad "export failed"; show "$work/export.err"; fi
jq -r 'select(.type == "room_change") | [.user, .action, (.target // "-"), (.text // "-"), (.invite_only // "-"), (.secret // "-"), .owner, (.session | length)] | @tsv' "$work/export.jsonl" >"$work/actions.tsv"
cat >"$work/want.tsv" <<'EOF'
alice	topic	-	release friday — no deploys	-	-	alice	24
alice	op	bob	-	-	-	alice	24
bob	kick	carol	spamming the channel	-	-	alice	24
alice	ban	carol	-	-	-	alice	24
alice	mute	dave	-	-	-	alice	24
alice	mode	-	-	true	-	alice	24
bob	invite	erin	-	-	-	alice	24
bob	invite	dave	-	-	-	alice	24
alice	mode	-	-	-	true	alice	24
EOF
if diff "$work/want.tsv" "$work/actions.tsv" >/dev/null; then ok; else bad "the exported room changes differ"; diff "$work/want.tsv" "$work/actions.tsv" | show; fi
# The kick and the ban of carol while in the room: the change first, then her leave.
jq -r 'select(.type == "room_change" or (.type == "leave" and .user == "carol")) | .type + " " + (.action // "")' "$work/export.jsonl" | head -4 >"$work/order.txt"
check "the kick is recorded before carol's leave" [ "$(sed -n 3,4p "$work/order.txt" | tr '\n' ' ')" = "room_change kick leave  " ]
run "transcript verify passes" 0 transcript_verify "$work/data" --host-key "$work/data/host_key.pub"
expect "verify says PASS" "PASS"

finish mod.sh
