#!/usr/bin/env bash
# Catching up through the compiled binary (docs/PROTOCOL.md §7.14): carol has
# been in #general and #ops on her laptop, and has enrolled a phone (its own
# device key, `device add` approved on the laptop); while she is offline
# alice and bob talk in both rooms and send her direct messages. carol comes
# back on her phone with `chat --json`: it joins her rooms (it was never in
# them) and shows one `catchup` line per room before exactly the messages she
# missed, in order, and the stored DMs, each once; then on her laptop, which
# has read markers of its own: exactly the same. The server kept each
# device's markers, so a second run on either shows nothing new. Then the
# interactive screen (tmux): one more message, and the laptop says
# `-- 1 new message in #general since HH:MM` before it; /leave ops forgets
# the room for every device, so the phone's next start joins only #general,
# where it is shown the message the laptop read and it did not. Everything lives in a
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
# carol is in #general and #ops on her laptop, and enrolls her phone (a device of its own), then goes offline.
say carol-laptop general $'/join ops\n'
# Her machines: on a cluster, the laptop alone.
machines="carol-phone carol-laptop"
if single_node_only "read.sh: carol's phone (device enrollment, device add/approve, is not available on a cluster node yet); her laptop's checks run"; then
printf '%s\n' "${pw[carol-laptop]}" | as carol-phone "$bin" device add -u carol --name phone --server "$srv" --password-stdin --accept-new-host >"$work/add.out" 2>"$work/add.err" &
add_pid=$!
pids+=("$add_pid")
wait_for "$work/add.out" '^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$' || { bad "device add printed no code"; show "$work/add.out" "$work/add.err"; }
input="${pw[carol-laptop]}"$'\n'
run "carol approves her phone on her laptop" 0 as carol-laptop "$bin" device approve "$(head -1 "$work/add.out")" --password-stdin --yes
if wait_exit "$add_pid" && [ "$rc" = 0 ]; then ok; else bad "device add: exit $rc"; show "$work/add.err"; fi
else machines="carol-laptop"; fi
# alice and bob talk in both rooms and send her direct messages.
say alice general $'morning all\ncarol, the deploy is at 3\n/msg carol are you around?\n'
say bob ops $'ops: disk at 80%\nops: fixed\n/msg carol see #ops\n'
say bob general $'bob here too\n'

# carol comes back on her phone, then on her laptop: each is shown what it missed.
for h in $machines; do
as "$h" "$bin" chat --server "$srv" --json </dev/null >"$work/$h.out" 2>"$work/$h.err"
rc=$?
if [ "$rc" = 0 ]; then ok; else bad "$h: exit $rc"; show "$work/$h.err"; fi
want=$'dm alice: are you around? (late)
dm bob: see #ops (late)
catchup general 3 3
general alice: morning all
general alice: carol, the deploy is at 3
general bob: bob here too
catchup ops 2 2
ops bob: ops: disk at 80%
ops bob: ops: fixed'
got=$(caught "$work/$h.out")
if [ "$got" = "$want" ]; then ok; else bad "$h: not exactly what she missed"; diff <(echo "$want") <(echo "$got") | show; show "$work/$h.err"; fi
check "$h: the catchup lines carry since (ms)" [ "$(jq -c 'select(.type=="catchup") | (.since | type)' "$work/$h.out" | sort -u)" = '"number"' ]
check "$h: the first room stays current" [ "$(jq -r 'select(.type=="current") | .room' "$work/$h.out" | tail -1)" = general ]
check "$h: stderr is quiet" [ ! -s "$work/$h.err" ]
done

# Read: the server kept each device's markers. Again on the phone, then on the laptop: nothing new.
for h in $machines; do
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
last=${machines%% *} # the phone (or, on a cluster, the laptop, which read it all)
as "$last" "$bin" chat --server "$srv" --json </dev/null >"$work/after-leave.out" 2>"$work/after-leave.err"
check "after /leave ops: the next start joins only general" [ "$(jq -r 'select(.type=="room") | .room' "$work/after-leave.out" | tr '\n' ' ')" = "general " ]
got=$(caught "$work/after-leave.out")
want=$'catchup general 1 1\ngeneral alice: one more thing'
[ "$last" = carol-laptop ] && want=""
if [ "$got" = "$want" ]; then ok; else bad "after /leave ops: $last should be shown what only the laptop read (the phone), or nothing (the laptop): $got"; fi

stop_server
finish read.sh
