#!/usr/bin/env bash
# Catching up through the compiled binary (docs/PROTOCOL.md §7.12): carol has
# been in #general and #ops; while she is offline alice and bob talk in both
# rooms and send her direct messages. carol comes back on her second machine
# (a copy of her SECURECHAT_HOME: the same key, so today the same device as
# the first) with `chat --json`: one `catchup` line per room before exactly
# the messages she missed, in order, and the stored DMs, each once; the server
# kept her read markers, so a second run on that machine, and then a run on
# her first one, show nothing new. Then the interactive screen (tmux): one
# more message, and carol's first machine says
# `-- 1 new message in #general since HH:MM` before it; /leave ops forgets
# the room, so the next start no longer joins it. Everything lives in a
# temporary directory; the server and the tmux server are stopped on every
# exit path; every wait is bounded.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
tmux_begin read.sh

# as HOME command...: runs with that client state directory ("machine"), for at most 60 s.
as() { local h=$1; shift; env SECURECHAT_HOME="$work/home-$h" NO_COLOR=1 timeout 60 "$@"; }
# say HOME ROOM LINES: the lines piped to `chat --room ROOM` as that machine's user; it must exit 0.
say() {
  if printf '%s' "$3" | as "$1" "$bin" chat --server "$srv" --room "$2" >"$work/say.out" 2>"$work/say.err"; then ok; else bad "$1 in $2: exit $?"; show "$work/say.err"; fi
}
# caught FILE: what a `chat --json` run showed, one line each: "catchup ROOM UNREAD SHOWN",
# "ROOM FROM: TEXT" for a room message, "dm FROM: TEXT (late)" for a direct message.
caught() {
  jq -r 'if .type == "catchup" then "catchup \(.room) \(.unread) \(.shown)"
    elif .type == "message" then "\(.room) \(.from): \(.text)"
    elif .type == "direct" then "dm \(.from): \(.text)\(if .late then " (late)" else "" end)"
    else empty end' "$1"
}

start_server "$work/data"
srv="127.0.0.1:$port"

declare -A pw=([alice]="correct horse battery staple" [bob]="a long enough passphrase for him" [carol-laptop]="purple elephants dance at noon")
for h in alice bob carol-laptop; do
  input="${pw[$h]}"$'\n'
  run "register ${h%-laptop}" 0 as "$h" "$bin" register "${h%-laptop}" --server "$srv" --password-stdin --accept-new-host
done
# carol's second machine: a copy of her files (with device keys it would enroll a key of its own).
cp -a "$work/home-carol-laptop" "$work/home-carol-phone"

# carol is in #general and #ops, then goes offline.
say carol-laptop general $'/join ops\n'
# alice and bob talk in both rooms and send her direct messages.
say alice general $'morning all\ncarol, the deploy is at 3\n/msg carol are you around?\n'
say bob ops $'ops: disk at 80%\nops: fixed\n/msg carol see #ops\n'
say bob general $'bob here too\n'

# carol comes back on her second machine.
as carol-phone "$bin" chat --server "$srv" --json </dev/null >"$work/phone.out" 2>"$work/phone.err"
rc=$?
if [ "$rc" = 0 ]; then ok; else bad "carol's phone: exit $rc"; show "$work/phone.err"; fi
want=$'dm alice: are you around? (late)
dm bob: see #ops (late)
catchup general 3 3
general alice: morning all
general alice: carol, the deploy is at 3
general bob: bob here too
catchup ops 2 2
ops bob: ops: disk at 80%
ops bob: ops: fixed'
got=$(caught "$work/phone.out")
if [ "$got" = "$want" ]; then ok; else bad "carol's phone: not exactly what she missed"; diff <(echo "$want") <(echo "$got") | show; show "$work/phone.err"; fi
check "carol's phone: the catchup lines carry since (ms)" [ "$(jq -c 'select(.type=="catchup") | (.since | type)' "$work/phone.out" | sort -u)" = '"number"' ]
check "carol's phone: the first room stays current" [ "$(jq -r 'select(.type=="current") | .room' "$work/phone.out" | tail -1)" = general ]
check "carol's phone: stderr is quiet" [ ! -s "$work/phone.err" ]

# Read: the server kept her markers. Again on the phone, then on the laptop: nothing new.
for h in carol-phone carol-laptop; do
  as "$h" "$bin" chat --server "$srv" --json </dev/null >"$work/$h-again.out" 2>"$work/$h-again.err"
  rc=$?
  if [ "$rc" = 0 ]; then ok; else bad "$h again: exit $rc"; show "$work/$h-again.err"; fi
  got=$(caught "$work/$h-again.out")
  if [ -z "$got" ]; then ok; else bad "$h again: shown again: $got"; fi
  check "$h again: still in both rooms" [ "$(jq -r 'select(.type=="room") | .room' "$work/$h-again.out" | sort | tr '\n' ' ')" = "general ops " ]
done

# The interactive screen: one more message; carol's laptop says so before it.
say alice general $'one more thing\n'
q() { printf '%q' "$1"; }
tm new-session -d -s carol -x 100 -y 30 "SECURECHAT_HOME=$(q "$work/home-carol-laptop") NO_COLOR=1 $(q "$bin") chat --server $srv; echo EXIT:\$? > $(q "$work/carol.exit")" \; set-option -t carol remain-on-exit on
screen() { tm capture-pane -p -t carol | sed 's/ *$//'; }
wait_screen() {
  for _ in $(seq 1 100); do
    screen | grep -qE -- "$1" && return 0
    sleep 0.1
  done
  return 1
}
if wait_screen '^-- 1 new message in #general since [0-9]{2}:[0-9]{2}$'; then ok; else bad "carol's screen: no summary line"; screen | show; fi
rows=$(screen)
summary=$(grep -n '^-- 1 new message in #general' <<<"$rows" | cut -d: -f1)
message=$(grep -n 'one more thing' <<<"$rows" | head -1 | cut -d: -f1)
check "carol's screen: the summary comes before the message" [ -n "$summary" ] && [ -n "$message" ] && [ "$summary" -lt "$message" ]
check "carol's screen: no summary for #ops (nothing new there)" [ "$(grep -c 'new message.* in #ops' <<<"$rows")" = 0 ]
# /leave ops: the server forgets the room for her, so the next start joins only #general.
tm send-keys -t carol -l "/switch ops" \; send-keys -t carol Enter
tm send-keys -t carol -l "/leave" \; send-keys -t carol Enter
wait_screen ' -- you left ops$' || { bad "carol's screen: no 'you left ops'"; screen | show; }
tm send-keys -t carol -l "/quit" \; send-keys -t carol Enter
for _ in $(seq 1 100); do [ -s "$work/carol.exit" ] && break; sleep 0.1; done
check "carol's screen: /quit exits 0" [ "$(cat "$work/carol.exit" 2>/dev/null)" = "EXIT:0" ]
as carol-phone "$bin" chat --server "$srv" --json </dev/null >"$work/after-leave.out" 2>"$work/after-leave.err"
check "after /leave ops: the next start joins only general" [ "$(jq -r 'select(.type=="room") | .room' "$work/after-leave.out" | tr '\n' ' ')" = "general " ]
check "after /leave ops: nothing new (the screen showed it)" [ -z "$(caught "$work/after-leave.out")" ]

stop_server
finish read.sh
