#!/usr/bin/env bash
# Drives the compiled binary through editing and deleting messages
# (PROTOCOL.md §7.12), as two people would: a server with a 2-second edit
# window; bob listens (`chat --json`, stdin a fifo held open by a sleep of our
# own, lib.sh's chat_bg) while alice says two lines, edits the first and deletes the second
# from a pipe, then edits a direct message to bob; bob's client shows the
# changes; bob cannot change alice's
# message; /history shows the current text, also after the server restarts;
# an edit after the window is refused; the transcript keeps the original
# message with the edit and delete entries naming it, `transcript export`
# shows that chain, and `transcript verify` passes. Then bob in a terminal
# (tmux) sees "(edited)" and "[deleted]". Every process started here is
# stopped by its own PID on every exit path; every wait is bounded.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
if command -v tmux >/dev/null 2>&1; then tmux_begin edit.sh; else begin; fi

PW='purple elephants dance at noon'
# as USER COMMAND...: run with USER's own client state ("machine"), bounded in time.
as() { local u=$1; shift; env SECURECHAT_HOME="$work/home-$u" NO_COLOR=1 timeout 60 "$@"; }
# chat_as USER LINES: USER's scripted chat (--json) reading LINES, its output in $out.
chat_as() { input=$2; run "$1: ${2//$'\n'/ | }" 0 as "$1" "$bin" chat --server "$srv" --json; }
# line_of TYPE SEQ: the last JSON line of TYPE about room seq SEQ in $out.
line_of() { grep "^{\"type\":\"$1\"" <<<"$out" | grep "\"seq\":$2[,}]" | tail -1; }

start_server "$work/data" 0 --edit-window 2s
srv="127.0.0.1:$port"
for u in alice bob; do
  input="$PW"$'\n'
  run "register $u" 0 as "$u" "$bin" register "$u" --server "$srv" --password-stdin --accept-new-host
done

# bob listens (lib.sh: sets bob_pid and bob_holder).
chat_bg "$work/home-bob" bob bob

# alice: two lines; /edit 2 is the first of them, /delete alone the last.
chat_as alice $'teh plan is set\nmy password is hunter2\n/edit 2 the plan is set\n/delete\n'
check "alice: 4 acks (2 lines, the edit, the delete)" [ "$(grep -c '^{"type":"ack"' <<<"$out")" = 4 ]
check "alice: no nack" [ "$(grep -c '^{"type":"nack"' <<<"$out")" = 0 ]
expect "alice is told her edit is done" "you edited your message 1 in general: the plan is set (edited)"
expect "alice is told her delete is done" "you deleted your message 2 in general [deleted]"
edit_ack=$(grep '^{"type":"ack","id":3,' <<<"$out")
[[ $edit_ack == *'"seq":1,'*'"tseq":'* ]] && ok || bad "the edit's ack names message 1 and its transcript entry: ${edit_ack:-none}"

# bob's client shows both.
wait_for "$work/bob.out" '^\{"type":"deleted"' || bad "bob: no deleted event"
grep -q '^{"type":"edited","room":"general","seq":1,"ts":[0-9]*,"by":"alice","text":"the plan is set"}' "$work/bob.out" && ok || { bad "bob: no edited event for message 1"; show "$work/bob.out"; }
grep -q '^{"type":"deleted","room":"general","seq":2,"ts":[0-9]*,"by":"alice"}' "$work/bob.out" && ok || { bad "bob: no deleted event for message 2"; show "$work/bob.out"; }

# A direct message, edited: bob's client shows that too.
chat_as alice $'/msg bob meet at 5\n/edit @bob meet at 6\n'
check "alice: the dm and its edit acknowledged" [ "$(grep -c '^{"type":"ack"' <<<"$out")" = 2 ]
wait_for "$work/bob.out" '^\{"type":"edited","to":"bob"' && ok || { bad "bob: no edited event for the dm"; show "$work/bob.out"; }
grep -q '^{"type":"edited","to":"bob","seq":[0-9]*,"ts":[0-9]*,"by":"alice","text":"meet at 6"}' "$work/bob.out" && ok || { bad "bob: the dm's edit"; show "$work/bob.out"; }

# bob cannot change alice's message (and it stays as it is).
chat_as bob $'/edit #1 bob was here\n/delete #1\n'
check "bob: both refused not_yours" [ "$(grep -c '^{"type":"nack","id":[0-9]*,"code":"not_yours"' <<<"$out")" = 2 ]

# /history: the current text, edited; the deleted message without its text.
history_shows_current() {
  local other=alice; [ "$1" = alice ] && other=bob
  chat_as "$1" $'/history\n/history @'"$other"$'\n'
  local m1 m2
  m1=$(line_of message 1); m2=$(line_of message 2)
  [[ $m1 == *'"text":"the plan is set"'*'"edited":true'* ]] && ok || { bad "$2: message 1 is not shown edited: ${m1:-none}"; show <<<"$out"; }
  [[ $m2 == *'"deleted":true'* && $m2 != *'"text"'* ]] && ok || { bad "$2: message 2 is not shown deleted: ${m2:-none}"; show <<<"$out"; }
  refute "$2: the deleted text is not shown" "hunter2"
  local d; d=$(grep '^{"type":"direct"' <<<"$out" | tail -1)
  [[ $d == *'"text":"meet at 6"'*'"edited":true'* ]] && ok || { bad "$2: the dm is not shown edited: ${d:-none}"; show <<<"$out"; }
}
history_shows_current bob "/history"

# Past the window: refused, and the text stays.
sleep 2.2
chat_as alice $'/edit #1 too late\n/delete #1\n'
check "after the window: both refused edit_window_closed" [ "$(grep -c '^{"type":"nack","id":[0-9]*,"code":"edit_window_closed"' <<<"$out")" = 2 ]
expect "the refusal names the window" "older than 2 s"

kill -TERM "$bob_holder"; wait "$bob_holder" 2>/dev/null
wait_exit "$bob_pid" && [ "$rc" = 0 ] && ok || bad "bob: exit $rc after his stdin closed"

# After a restart, history still shows the current text (history.db follows the transcript).
stop_server
start_server "$work/data" "$port" --edit-window 2s
history_shows_current alice "/history after a restart"
stop_server

# The transcript: the original message untouched, then the edit and the delete naming it.
exported=$(transcript_export "$work/data" --room general 2>"$work/export.err")
rc=$?
[ "$rc" = 0 ] && ok || { bad "transcript export: exit $rc"; show "$work/export.err"; }
msg1=$(jq -c 'select(.type=="message" and .room_seq==1)' <<<"$exported")
msg2=$(jq -c 'select(.type=="message" and .room_seq==2)' <<<"$exported")
[[ $(jq -r .text <<<"$msg1") == "teh plan is set" ]] && ok || bad "export: message 1 is not the original: $msg1"
[[ $(jq -r .text <<<"$msg2") == "my password is hunter2" ]] && ok || bad "export: message 2 is not the original: $msg2"
s1=$(jq .seq <<<"$msg1"); s2=$(jq .seq <<<"$msg2")
chain=$(jq -c "select(.seq==$s1 or .ref==$s1) | [.type, .user // .from, .text]" <<<"$exported" | tr '\n' ' ')
[ "$chain" = '["message","alice","teh plan is set"] ["edit","alice","the plan is set"] ' ] && ok || bad "export: the versions of message 1: $chain"
chain=$(jq -c "select(.seq==$s2 or .ref==$s2) | [.type, .user // .from, .text]" <<<"$exported" | tr '\n' ' ')
[ "$chain" = '["message","alice","my password is hunter2"] ["delete","alice",null] ' ] && ok || bad "export: the versions of message 2: $chain"
check "export: the refused changes are not recorded" [ "$(jq -c 'select(.type=="edit" or .type=="delete")' <<<"$exported" | wc -l)" = 2 ]
all=$(transcript_export "$work/data" --user bob 2>/dev/null)
dm=$(jq -c 'select(.type=="direct" and .to=="bob")' <<<"$all" | tail -1)
chain=$(jq -c "select(.seq==$(jq .seq <<<"$dm") or .ref==$(jq .seq <<<"$dm")) | [.type, .user // .from, .to, .text]" <<<"$all" | tr '\n' ' ')
[ "$chain" = '["direct","alice","bob","meet at 5"] ["edit","alice","bob","meet at 6"] ' ] && ok || bad "export: the versions of the dm: $chain"
run "transcript verify" 0 transcript_verify "$work/data" --host-key "$work/data/host_key.pub"
expect "verify says PASS" "PASS"

# An interactive terminal: bob sees "(edited)" and "[deleted]" as they happen.
if declare -F tm >/dev/null; then
  start_server "$work/data" "$port" --edit-window 2s
  tm new-session -d -s bob -x 120 -y 30 "env SECURECHAT_HOME='$work/home-bob' NO_COLOR=1 '$bin' chat --server '$srv'"
  seen() { for _ in $(seq 1 100); do tm capture-pane -p -t bob | grep -qF -- "$1" && return 0; sleep 0.1; done; return 1; }
  seen "general" || bad "tmux: bob's chat did not start"
  chat_as alice $'a fresh line\nsecond fresh line\n/edit 2 a fresher line\n/delete\n'
  seen "a fresher line (edited)" && ok || { bad "tmux: bob does not see the edit marked (edited)"; tm capture-pane -p -t bob | show; }
  seen "alice deleted a message in general [deleted]" && ok || { bad "tmux: bob does not see the delete"; tm capture-pane -p -t bob | show; }
  tm send-keys -t bob "/quit" Enter
  stop_server
fi

finish edit.sh
