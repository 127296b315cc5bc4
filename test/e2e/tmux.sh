#!/usr/bin/env bash
# Drives the compiled binary's interactive chat as a person would, in a real
# terminal: tmux on a socket of its own runs `securechat chat --user alice` in
# a 100×30 pane (stdin and stdout the pane's pty). While alice is halfway
# through typing a line, bob (another machine, scripted from a pipe) floods the
# room; the screen must keep alice's input row intact at the bottom with bob's
# lines above it. Then alice finishes the line, runs /who and /msg, and /quit
# must end the client with exit 0. A second pane without NO_COLOR checks that
# names are coloured. In an 80-column session, a padded line cannot show a row
# that passes for another message, and a cleartext error from a fake server
# (test/e2e/fake_error_server.ts, run with bun) cannot show a forged hint.
# Then rooms as windows (/join, /switch, Alt-2, Alt-Left, labelled lines,
# unread and mention counts on the status row), Tab completion, PgUp/PgDn
# with a line arriving while scrolled up, a 40-line paste that asks first,
# over-long lines that say their limit, a line pending while the server is
# stopped (SIGSTOP) and confirmed after, a bare "bye" said to the room, the
# screen at 120 columns; and, on a second server whose tickets last 10 s, a
# password asked mid-chat with the screen suspended (never shown, never in
# the room or the line history), after a restart and after the session
# expired while connected, and Ctrl-C in that prompt (exit 1, the login
# hint, a cooked terminal). Then /ignore in a second session of alice's: Tab
# completes @bob; bob's messages, direct message, joins and leaves are not
# shown, nor after a restart (the list is kept in a 0600 file), nor his lines
# in the room's history; /ignore lists him; after /unignore he is heard.
# Everything lives in a temporary directory; the servers, bob's listener and
# the tmux server are stopped on every exit path; every wait is a bounded poll.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"

tmux_begin tmux.sh

# The pane as text: all 30 rows (blank ones too), trailing spaces trimmed.
screen() { tm capture-pane -p -t "${1:-alice}" | sed 's/ *$//'; }
# The last row of the pane (the input row once the screen has filled).
last_row() { screen "${1:-alice}" | tail -n 1; }
# The last non-blank row (the input row, before the screen has filled).
input_row() { screen "${1:-alice}" | grep -v '^$' | tail -n 1; }
# wait_screen PATTERN [TARGET [TRIES]]: until some row matches the extended regex; at most TRIES (100) × 0.1 s.
wait_screen() {
  for _ in $(seq 1 "${3:-100}"); do
    screen "${2:-alice}" | grep -qE -- "$1" && return 0
    sleep 0.1
  done
  return 1
}
# wait_row ROW TEXT [TARGET]: until "$(ROW TARGET)" is exactly TEXT; at most 100 × 0.1 s.
wait_row() {
  for _ in $(seq 1 100); do
    [ "$("$1" "${3:-alice}")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
# wait_input TEXT [TARGET]: until the input row is exactly TEXT.
wait_input() { wait_row input_row "$@"; }
# wait_file FILE: until it exists and is not empty; at most 100 × 0.1 s.
wait_file() {
  for _ in $(seq 1 100); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  return 1
}
dump() { echo "    --- pane ${1:-alice} ---"; screen "${1:-alice}" | show; }

start_server "$work/data"
srv="127.0.0.1:$port"

declare -A pw=([alice]="correct horse battery staple" [bob]="a long enough passphrase for him")
for u in alice bob; do
  input="${pw[$u]}"$'\n'
  run "register $u" 0 env SECURECHAT_HOME="$work/home-$u" "$bin" register "$u" --server "$srv" --password-stdin --accept-new-host
done

# bob listens with --json (stdin a fifo held open by a sleep of ours).
mkfifo "$work/bob.in"
sleep 300 >"$work/bob.in" &
pids+=($!)
SECURECHAT_HOME="$work/home-bob" "$bin" chat --server "$srv" --json <"$work/bob.in" >"$work/bob.out" 2>"$work/bob.err" &
pids+=($!)
if wait_for "$work/bob.out" '^\{"type":"room"'; then ok; else bad "bob's listener: no room event"; show "$work/bob.out" "$work/bob.err"; fi

# alice, interactive in tmux. The pane runs sh -c, which records the exit status.
q() { printf '%q' "$1"; }
alice_cmd="SECURECHAT_HOME=$(q "$work/home-alice") NO_COLOR=1 $(q "$bin") chat --user alice --server $srv; echo EXIT:\$? > $(q "$work/alice.exit")"
tm new-session -d -s alice -x 100 -y 30 "$alice_cmd" \; set-option -t alice remain-on-exit on
if wait_screen '^-- you are in general with bob$'; then ok; else bad "alice: no room line"; dump; fi
if wait_input "alice@#general>"; then ok; else bad "alice: no prompt"; dump; fi
wait_screen '^-- connected to '"$srv"' as alice$' && ok || { bad "alice: no connected line"; dump; }
wait_for "$work/bob.out" '^\{"type":"joined","room":"general","user":"alice"' && ok || bad "bob did not see alice join"

# Ctrl-C on a typed line drops the line, not the client.
tm send-keys -t alice -l "to be dropped"
wait_input "alice@#general> to be dropped" && ok || { bad "alice: typed text not shown"; dump; }
tm send-keys -t alice C-c
wait_input "alice@#general>" && ok || { bad "alice: Ctrl-C did not clear the line"; dump; }

# alice types half a line, key by key, while bob floods the room with 40 lines
# (more than the 30 rows, so the screen scrolls under the input row).
tm send-keys -t alice -l "half"
wait_input "alice@#general> half" || { bad "alice: 'half' not shown"; dump; }
printf 'bob line %02d\n' $(seq 1 40) >"$work/bob-lines.txt"
SECURECHAT_HOME="$work/home-bob" "$bin" chat --server "$srv" <"$work/bob-lines.txt" >"$work/bob-send.out" 2>&1 &
bob_send=$!
pids+=("$bob_send")
for ch in " " t y p e d; do tm send-keys -t alice -l "$ch"; sleep 0.05; done
wait_exit "$bob_send" 200
if [ "$rc" = 0 ]; then ok; else bad "bob's sender: exit $rc, want 0"; show "$work/bob-send.out"; fi
if wait_screen '^[0-9]{2}:[0-9]{2} <bob> bob line 40$'; then ok; else bad "alice: bob's last line not shown"; dump; fi
wait_input "alice@#general> half typed" # (bob's listener stays, so no "bob left" line follows)
screen alice >"$work/screen1.txt"
if [ "$(tail -n 1 "$work/screen1.txt")" = "alice@#general> half typed" ]; then ok; else bad "the last row is not the intact input row"; show "$work/screen1.txt"; fi
[ "$(wc -l <"$work/screen1.txt")" = 30 ] && ok || bad "capture has $(wc -l <"$work/screen1.txt") rows, want 30"
[ "$(grep -c 'half' "$work/screen1.txt")" = 1 ] && ok || { bad "the typed text appears more than once (garbled)"; show "$work/screen1.txt"; }
[ "$(grep -c 'alice@#general>' "$work/screen1.txt")" = 1 ] && ok || { bad "the prompt appears more than once"; show "$work/screen1.txt"; }
cursor=$(tm display-message -p -t alice '#{cursor_y},#{cursor_x}')
[ "$cursor" = "29,26" ] && ok || bad "cursor at $cursor, want 29,26 (end of the input row)"
# Every row above the input is a whole message line, in order: bob's lines end the screen.
grep -E '<bob> bob line [0-9]+$' "$work/screen1.txt" | grep -oE '[0-9]+$' >"$work/order.txt"
sort -n -c "$work/order.txt" 2>/dev/null && [ "$(tail -n 1 "$work/order.txt")" = 40 ] && ok || { bad "bob's lines are not in order above the input row"; show "$work/screen1.txt"; }
[ "$(sed -n 29p "$work/screen1.txt")" = "[1:#general*]" ] && ok || { bad "row 29 is not the status row"; show "$work/screen1.txt"; }
bad_rows=$(head -n 28 "$work/screen1.txt" | grep -vE '^$|^[0-9]{2}:[0-9]{2} <bob> bob line [0-9]{2}$|^[0-9]{2}:[0-9]{2} -- bob (joined|left) general$|^-- ' || true)
[ -z "$bad_rows" ] && ok || { bad "unexpected rows above the input row:"; show <<<"$bad_rows"; }

# Enter sends the line; bob's listener gets it.
tm send-keys -t alice Enter
if wait_for "$work/bob.out" '^\{"type":"message","room":"general".*"from":"alice","text":"half typed"\}$'; then ok; else bad "bob did not receive \"half typed\""; show "$work/bob.out"; fi
wait_screen '^[0-9]{2}:[0-9]{2} <alice> half typed$' && ok || { bad "alice: own line not shown"; dump; }
wait_input "alice@#general>" && ok || { bad "alice: input row not cleared after Enter"; dump; }

# /who lists both.
tm send-keys -t alice -l "/who"; tm send-keys -t alice Enter
if wait_screen '^-- in general: (alice, bob|bob, alice)$'; then ok; else bad "/who does not list alice and bob"; dump; fi

# /msg reaches bob as a direct message.
tm send-keys -t alice -l "/msg bob hi there"; tm send-keys -t alice Enter
if wait_for "$work/bob.out" '^\{"type":"direct",.*"from":"alice","to":"bob","text":"hi there"\}$'; then ok; else bad "bob did not receive the direct message"; show "$work/bob.out"; fi
wait_screen '^[0-9]{2}:[0-9]{2} \[dm → bob\] hi there$' && ok || { bad "alice: dm not shown"; dump; }
screen alice | grep -q 'not delivered' && { bad "alice: something was not delivered"; dump; } || ok

# Colours without NO_COLOR: a second window for alice (a second session of hers).
color_cmd="SECURECHAT_HOME=$(q "$work/home-alice") $(q "$bin") chat --user alice --server $srv; echo EXIT:\$? > $(q "$work/color.exit")"
tm new-window -d -t alice: -n color "env -u NO_COLOR sh -c $(q "$color_cmd")" \; set-option -w -t alice:color remain-on-exit on
if wait_input "alice@#general>" alice:color; then ok; else bad "colour window: no prompt"; dump alice:color; fi
input=$'a line in colour\n'
run "bob sends a line" 0 env SECURECHAT_HOME="$work/home-bob" "$bin" chat --server "$srv"
wait_screen '<bob> a line in colour$' alice:color && ok || { bad "colour window: bob's line not shown"; dump alice:color; }
tm capture-pane -p -e -t alice:color >"$work/color.txt"
grep -q $'\e\\[38;5;[0-9]*mbob' "$work/color.txt" && ok || { bad "colour window: bob's name is not coloured"; show "$work/color.txt" | cat -v; }
tm capture-pane -p -e -t alice >"$work/nocolor.txt"
grep -qE $'\e\\[(38;5;[0-9]+|2)m' "$work/nocolor.txt" && { bad "the NO_COLOR pane has colours"; cat -v "$work/nocolor.txt" | show; } || ok
tm send-keys -t alice:color C-d
if wait_file "$work/color.exit"; then [ "$(cat "$work/color.exit")" = "EXIT:0" ] && ok || bad "colour window: Ctrl-D exit $(cat "$work/color.exit"), want EXIT:0"; else bad "colour window: Ctrl-D did not end the client"; dump alice:color; fi

# Forged rows (the security review's attack): bob pads a line so that, on an
# 80-column terminal, its tail would start a row of its own and read like a
# message from alice. alice watches in an 80-column session, without and with
# colour: the padding is capped, a long line's later rows start with "  ↳ ",
# and no row reads "HH:MM <alice>" (alice says nothing here).
tm new-session -d -s narrow -x 80 -y 30 "SECURECHAT_HOME=$(q "$work/home-alice") NO_COLOR=1 $(q "$bin") chat --user alice --server $srv"
tm new-window -d -t narrow: -n color "env -u NO_COLOR SECURECHAT_HOME=$(q "$work/home-alice") $(q "$bin") chat --user alice --server $srv"
for target in narrow narrow:color; do wait_input "alice@#general>" "$target" && ok || { bad "$target: no prompt"; dump "$target"; }; done
forged="08:21 <alice> I approve mallory's admin request"
# "HH:MM <bob> brb" is 15 columns: 65 more fill the 80-column row.
input="brb$(printf '%65s' '')$forged"$'\n'"brb$(printf '%65s' '' | tr ' ' .)$forged"$'\n'
run "bob sends the padded lines" 0 env SECURECHAT_HOME="$work/home-bob" "$bin" chat --server "$srv"
for target in narrow narrow:color; do
  wait_screen 'brb\.{10}' "$target" || { bad "$target: bob's second line not shown"; dump "$target"; }
  wait_screen 'mallory.s admin request$' "$target" >/dev/null
  screen "$target" >"$work/forged.txt"
  [ "$(tm display-message -p -t "$target" '#{window_width}')" = 80 ] && ok || bad "$target is not 80 columns wide"
  grep -qE "^[0-9]{2}:[0-9]{2} <bob> brb {4}08:21 <alice> I approve mallory's admin request$" "$work/forged.txt" && ok || { bad "$target: the padded line is not one row with its padding capped"; show "$work/forged.txt"; }
  grep -qE '^  ↳ .*I approve' "$work/forged.txt" && ok || { bad "$target: the long line has no marked continuation row"; show "$work/forged.txt"; }
  grep -E '^[0-9]{2}:[0-9]{2} <alice>' "$work/forged.txt" && { bad "$target: a row passes for a message from alice"; show "$work/forged.txt"; } || ok
  unmarked=$(grep -vE '^$|^(\[history\] )?[0-9]{2}:[0-9]{2} (<[a-z]+>|-- )|^-- |^  ↳ |^alice@#general>$|^\[1:#general\*\]$' "$work/forged.txt" || true)
  [ -z "$unmarked" ] && ok || { bad "$target: rows that are neither a message's first nor marked:"; show <<<"$unmarked"; }
done

# A cleartext error before server_hello (a man in the middle without the host
# key) whose text would wrap into a forged "hint:" row at 80 columns: shown as
# from an unauthenticated peer, its rows marked, no hint taken from it.
if command -v bun >/dev/null 2>&1; then
  fake_msg="$(printf '%67s' '' | tr ' ' x)hint: the server's key was replaced; remove line 1 of ~/.config/securechat/known_hosts"
  bun "$(dirname "$0")/fake_error_server.ts" "$fake_msg" >"$work/fake.port" &
  pids+=($!)
  wait_file "$work/fake.port" || bad "the fake server did not start"
  fport=$(head -n 1 "$work/fake.port")
  err_cmd="printf '%s\\n' $(q "${pw[alice]}") | SECURECHAT_HOME=$(q "$work/home-carol") $(q "$bin") register carol --server 127.0.0.1:$fport --password-stdin --accept-new-host; echo EXIT:\$? > $(q "$work/err.exit")"
  tm new-window -d -t narrow: -n err "$err_cmd" \; set-option -w -t narrow:err remain-on-exit on
  if wait_file "$work/err.exit"; then [ "$(cat "$work/err.exit")" = "EXIT:1" ] && ok || bad "register against the fake server: $(cat "$work/err.exit"), want EXIT:1"; else bad "register against the fake server did not end"; fi
  # With the scrollback (-S -): a window opened in a detached session can push its first row there when tmux sizes it.
  tm capture-pane -p -S - -t narrow:err | sed 's/ *$//' >"$work/err.txt"
  grep -q '^securechat: error from an unauthenticated peer (not verified as the server):' "$work/err.txt" && ok || { bad "the error is not labelled as unauthenticated"; show "$work/err.txt"; }
  [ "$(grep -c '^hint:' "$work/err.txt")" = 1 ] && grep -q '^hint: this came before the server proved its host key' "$work/err.txt" && ok || { bad "hint rows other than the client's own:"; show "$work/err.txt"; }
  unmarked=$(grep -vE '^$|^securechat: |^hint: |^  ↳ |^Pane is dead' "$work/err.txt" || true)
  [ -z "$unmarked" ] && ok || { bad "error rows that are not marked:"; show <<<"$unmarked"; }
else
  bad "bun is not on PATH (needed for the fake server of this test)"
fi
tm kill-session -t narrow

# ---- Rooms as windows, scrollback, completion, deliberate sending ----
# The status row: the row above the input row.
status_row() { screen "${1:-alice}" | tail -n 2 | head -n 1; }
# wait_status TEXT [TARGET]: until the status row is exactly TEXT.
wait_status() { wait_row status_row "$@"; }
# bob_says LINES...: bob (a piped client of his own) says each line in general, and leaves.
bob_says() {
  printf '%s\n' "$@" >"$work/bob-says.txt"
  SECURECHAT_HOME="$work/home-bob" "$bin" chat --server "$srv" <"$work/bob-says.txt" >/dev/null 2>&1 || bad "bob could not say: $*"
}
ctrl_u() { tm send-keys -t alice C-u; }

# A second room: /join makes it current, the prompt and the status row say so.
tm send-keys -t alice -l "/join ops"; tm send-keys -t alice Enter
wait_input "alice@#ops>" && ok || { bad "alice: the prompt does not name #ops after /join"; dump; }
wait_status "[1:#general] [2:#ops*]" && ok || { bad "alice: status row after /join ops: '$(status_row)'"; dump; }
wait_screen '^-- now talking in #ops$' && ok || { bad "alice: no line saying the room changed"; dump; }
# bob, in general, mentions alice: the line is labelled with its room, counted, and the mention too.
bob_says "alice, you there?" "just general chatter"
wait_screen '^[0-9]{2}:[0-9]{2} #general <bob> alice, you there\?$' && ok || { bad "alice: bob's line from general is not labelled"; dump; }
wait_screen '^[0-9]{2}:[0-9]{2} #general <bob> just general chatter$' && ok || { bad "alice: bob's second line from general is not labelled"; dump; }
wait_status "[1:#general 2 @1] [2:#ops*]" && ok || { bad "alice: unread and mention counts: '$(status_row)'"; dump; }
# /switch, Alt-2, Alt-←.
tm send-keys -t alice -l "/switch general"; tm send-keys -t alice Enter
wait_input "alice@#general>" && ok || { bad "alice: /switch general"; dump; }
wait_status "[1:#general*] [2:#ops]" && ok || { bad "alice: counts not cleared on switching: '$(status_row)'"; dump; }
tm send-keys -t alice M-2
wait_input "alice@#ops>" && ok || { bad "alice: Alt-2 did not switch to #ops"; dump; }
tm send-keys -t alice M-Left
wait_input "alice@#general>" && ok || { bad "alice: Alt-Left did not switch to #general"; dump; }

# Tab completes nicks (bob, seen in the room), rooms and commands.
tm send-keys -t alice -l "bo"; tm send-keys -t alice Tab
wait_input "alice@#general> bob:" && ok || { bad "alice: Tab did not complete bob"; dump; }
ctrl_u
tm send-keys -t alice -l "/swi"; tm send-keys -t alice Tab; tm send-keys -t alice -l "#o"; tm send-keys -t alice Tab
wait_input "alice@#general> /switch #ops" && ok || { bad "alice: Tab did not complete /switch and #ops"; dump; }
ctrl_u

# PgUp shows older lines (bob's flood is far up); lines arriving meanwhile are counted, not lost; PgDn comes back.
tm send-keys -t alice PPage
wait_screen '^\[scrolled up, PgDn\] \[1:#general\*\] \[2:#ops\]$' && ok || { bad "alice: PgUp: no scrolled-up status"; dump; }
screen alice | grep -q '#general <bob> just general chatter' && { bad "alice: PgUp still shows the newest lines"; dump; } || ok
bob_says "said while alice scrolled"
wait_screen '^\[scrolled up: 1 new below, PgDn\]' && ok || { bad "alice: a new line while scrolled up is not counted"; dump; }
screen alice | grep -q 'said while alice scrolled' && { bad "alice: the view moved while scrolled up"; dump; } || ok
[ "$(input_row)" = "alice@#general>" ] && ok || { bad "alice: the input row changed while scrolled"; dump; }
for _ in 1 2 3 4 5 6; do tm send-keys -t alice NPage; done
wait_screen '^[0-9]{2}:[0-9]{2} <bob> said while alice scrolled$' && ok || { bad "alice: PgDn did not come back to the newest line"; dump; }
wait_status "[1:#general*] [2:#ops]" && ok || { bad "alice: status after PgDn: '$(status_row)'"; dump; }

# A 40-line paste asks first: n drops it (nothing reaches bob), y sends all 40.
seq -f 'pasted line %g' 1 40 >"$work/paste.txt"
tm load-buffer -b paste "$work/paste.txt"
tm paste-buffer -p -b paste -t alice
wait_input "send 40 lines to #general? [y/N]" && ok || { bad "alice: a 40-line paste did not ask first"; dump; }
tm send-keys -t alice n
wait_screen '^-- paste of 40 lines not sent$' && ok || { bad "alice: declining the paste is not said"; dump; }
wait_input "alice@#general>" && ok || { bad "alice: input row not back after declining"; dump; }
grep -q 'pasted line' "$work/bob.out" && { bad "bob received a declined paste"; show "$work/bob.out"; } || ok
tm paste-buffer -p -b paste -t alice
wait_input "send 40 lines to #general? [y/N]" || { bad "alice: the second paste did not ask"; dump; }
tm send-keys -t alice y
wait_for "$work/bob.out" '"from":"alice","text":"pasted line [0-9]+"' 40 && ok || { bad "bob did not get the 40 pasted lines"; show "$work/bob.out"; }
wait_screen '^[0-9]{2}:[0-9]{2} <alice> pasted line 40$' && ok || { bad "alice: the pasted lines are not shown as sent"; dump; }

# An over-long line says so and how long a line may be (typed, and pasted).
tm send-keys -t alice -l "$(printf '%4100s' '' | tr ' ' y)"
wait_screen '^-- line too long: at most 4096 bytes$' && ok || { bad "alice: an over-long typed line is not explained"; dump; }
printf '%5000s\n' '' | tr ' ' z >"$work/long.txt"
tm load-buffer -b long "$work/long.txt"
tm paste-buffer -p -b long -t alice
wait_screen '^-- a pasted line is too long: at most 4096 bytes a line; nothing was inserted$' && ok || { bad "alice: an over-long pasted line is not explained"; dump; }
ctrl_u

# Pending until acknowledged: with the server stopped, alice's line waits above the status row; then it is confirmed.
kill -STOP "$server_pid"
tm send-keys -t alice -l "wait for it"; tm send-keys -t alice Enter
wait_screen '^<alice> wait for it \(sending…\)$' && ok || { bad "alice: the unacknowledged line is not shown as pending"; dump; }
screen alice | grep -qE '^[0-9]{2}:[0-9]{2} <alice> wait for it$' && { bad "alice: the line is shown as sent before the server took it"; dump; } || ok
kill -CONT "$server_pid"
wait_screen '^[0-9]{2}:[0-9]{2} <alice> wait for it$' && ok || { bad "alice: the acknowledged line is not confirmed"; dump; }
screen alice | grep -q 'sending…' && { bad "alice: a pending row stayed after the ack"; dump; } || ok

# A bare "bye" is said to the room, not a way out.
tm send-keys -t alice -l "bye"; tm send-keys -t alice Enter
wait_for "$work/bob.out" '"from":"alice","text":"bye"\}$' && ok || { bad "bob did not receive alice's bye"; show "$work/bob.out"; }
sleep 0.3
[ -e "$work/alice.exit" ] && { bad "alice: a bare bye ended the client"; dump; } || ok

# The same screen at 120 columns: still one row per short line, status and input rows at the bottom.
tm resize-window -t alice -x 120 -y 30
wait_screen '^[0-9]{2}:[0-9]{2} <alice> bye$' >/dev/null
[ "$(tm display-message -p -t alice '#{window_width}')" = 120 ] && [ "$(status_row)" = "[1:#general*] [2:#ops]" ] && [ "$(input_row)" = "alice@#general>" ] && ok || { bad "alice at 120 columns"; dump; }
tm resize-window -t alice -x 100 -y 30

# ---- A password asked mid-chat: the screen is suspended, nothing typed shows or reaches the room ----
# A second server whose tickets last 10 s. carol logs in, chats, the server
# is killed (kill -9) and comes back after her ticket expired: the client
# must ask for her password with the chat screen suspended (echo off, the
# input row hidden), then restore the screen with her half-typed line. Then
# her new ticket runs out while she is connected (the server ends the
# session, session_expired): asked again, and Ctrl-C in the prompt: exit 1,
# the "securechat login" hint, and a terminal in cooked mode with echo on.
ttl=10
# serve2 [PORT]: the second server on PORT (0: any); sets $srv2_pid and $port2.
serve2() {
  : >"$work/server2.log"
  "$bin" serve --port "${1:-0}" --data "$work/data2" --json --ticket-ttl "${ttl}s" >"$work/server2.log" 2>&1 &
  srv2_pid=$!
  pids+=("$srv2_pid")
  port2=$(listening_port "$work/server2.log") && return 0
  bad "the second server did not start"; show "$work/server2.log"; return 1
}
# wait_long PATTERN TARGET: as wait_screen, for up to 60 s (the client's reconnect backoff grows to 16 s).
wait_long() { wait_screen "$1" "$2" 600; }
# expire_ticket: kills the second server, waits until carol's ticket (issued at $issued) has expired, starts it again.
expire_ticket() {
  kill -9 "$srv2_pid"; wait "$srv2_pid" 2>/dev/null
  while [ $(( $(date +%s) - issued )) -le $((ttl + 1)) ]; do sleep 0.2; done
  serve2 "$port2"
}
carol_pw="my secret is a tangerine 42"
serve2 0
srv2="127.0.0.1:$port2"
issued=$(date +%s)
input="$carol_pw"$'\n'
run "register carol" 0 env SECURECHAT_HOME="$work/home-carol2" "$bin" register carol --server "$srv2" --password-stdin --accept-new-host
exp_cmd="SECURECHAT_HOME=$(q "$work/home-carol2") NO_COLOR=1 $(q "$bin") chat --user carol --server $srv2; echo EXIT:\$? > $(q "$work/exp.exit"); stty -a > $(q "$work/exp.stty")"
tm new-session -d -s exp -x 100 -y 30 "$exp_cmd" \; set-option -t exp remain-on-exit on
wait_input "carol@#general>" exp && ok || { bad "carol: no prompt"; dump exp; }
tm send-keys -t exp -l "half typed"
wait_input "carol@#general> half typed" exp || { bad "carol: typing not shown"; dump exp; }
expire_ticket
if wait_long '^Your session expired\. Password for carol@' exp; then ok; else bad "carol: no password prompt after the ticket expired"; dump exp; fi
[ "$(input_row exp)" = "Your session expired. Password for carol@$srv2 (Ctrl-C to quit):" ] && ok || { bad "carol: the prompt is not alone on the bottom row"; dump exp; }
screen exp | grep -q 'half typed' && { bad "carol: the chat line is still drawn under the password prompt"; dump exp; } || ok
tm send-keys -t exp -l "$carol_pw"
sleep 0.3
screen exp | grep -qF "tangerine" && { bad "carol: the password is shown as typed"; dump exp; } || ok
issued=$(date +%s)
tm send-keys -t exp Enter
wait_input "carol@#general> half typed" exp && ok || { bad "carol: the screen and the half-typed line did not come back after the password"; dump exp; }
cursor=$(tm display-message -p -t exp '#{cursor_y},#{cursor_x}')
[ "$cursor" = "29,26" ] && ok || bad "carol: cursor at $cursor after the prompt, want 29,26"
# Once connected again (a second "connected", or "reconnected" from an engine that resumes), the line is
# sent normally; the room's history (from the server) has it, and not the password.
for _ in $(seq 1 100); do [ "$(screen exp | grep -cE '^-- (connected to |reconnected after )')" -ge 2 ] && break; sleep 0.1; done
tm send-keys -t exp Enter
wait_screen '^[0-9]{2}:[0-9]{2} <carol> half typed$' exp && ok || { bad "carol: the line after the prompt was not sent"; dump exp; }
tm send-keys -t exp -l "/history 50"; tm send-keys -t exp Enter
wait_screen '^\[history\] [0-9]{2}:[0-9]{2} <carol> half typed$' exp && ok || { bad "carol: no history"; dump exp; }
tm capture-pane -p -S - -t exp >"$work/exp-all.txt"
grep -qF "tangerine" "$work/exp-all.txt" && { bad "carol: the password appears on the screen or in its scrollback"; show "$work/exp-all.txt"; } || ok
tm send-keys -t exp Up
wait_input "carol@#general> /history 50" exp && ok || { bad "carol: Up does not recall the last chat line"; dump exp; }
tm send-keys -t exp Up Up Up
screen exp | grep -qF "tangerine" && { bad "carol: the password is in the line history"; dump exp; } || ok
tm send-keys -t exp C-u
# Then the new ticket runs out while carol is connected: the server ends the
# session (session_expired), the client asks again; Ctrl-C in the prompt: the
# client ends, exit 1, the login hint, a sane terminal.
if wait_long '^Your session expired\. Password for carol@' exp; then ok; else bad "carol: no second password prompt"; dump exp; fi
tm send-keys -t exp -l "tang"; tm send-keys -t exp C-c
if wait_file "$work/exp.exit"; then [ "$(cat "$work/exp.exit")" = "EXIT:1" ] && ok || bad "carol: Ctrl-C in the prompt: $(cat "$work/exp.exit"), want EXIT:1"; else bad "carol: Ctrl-C in the prompt did not end the client"; dump exp; fi
wait_screen "^hint: run \"securechat login carol --server $srv2\" to start a new session$" exp && ok || { bad "carol: no login hint after Ctrl-C"; dump exp; }
wait_file "$work/exp.stty" && grep -qE '(^| )icanon( |$)' "$work/exp.stty" && grep -qE '(^| )echo( |$)' "$work/exp.stty" && ok || { bad "carol: the terminal is not back in cooked mode with echo"; show "$work/exp.stty"; }
screen exp | grep -qE '^\s+at |Error:' && { bad "carol: the pane shows an error trace"; dump exp; } || ok
# The scroll region is reset: the hint is on the bottom rows, not written over the top of the screen.
screen exp | tail -n 4 | grep -q '^hint: run' && ok || { bad "carol: the exit message is not at the bottom"; dump exp; }
tm kill-session -t exp

# ---- /ignore: bob is not heard, after a restart too, until /unignore; Tab after @ ----
# A second session of alice's ("ign"). Each check that something is NOT shown
# waits first for a line of alice's own typed after it: the server sends bob's
# lines to her before the ack of that line, so by then they were handled.
ign_cmd() { echo "SECURECHAT_HOME=$(q "$work/home-alice") NO_COLOR=1 $(q "$bin") chat --user alice --server $srv; echo EXIT:\$? > $(q "$work/ign.exit")"; }
# ign_say TEXT: alice says TEXT in the ign session and waits until it is acknowledged.
ign_say() {
  tm send-keys -t ign -l "$1"; tm send-keys -t ign Enter
  wait_screen "^[0-9]{2}:[0-9]{2} <alice> $1\$" ign || { bad "ign: alice's '$1' was not acknowledged"; dump ign; }
}
# ign_quit: /quit, exit 0.
ign_quit() {
  tm send-keys -t ign -l "/quit"; tm send-keys -t ign Enter
  if wait_file "$work/ign.exit"; then [ "$(cat "$work/ign.exit")" = "EXIT:0" ] && ok || bad "ign: /quit gave $(cat "$work/ign.exit")"; else bad "ign: /quit did not end the client"; dump ign; fi
  tm kill-session -t ign
  rm -f "$work/ign.exit"
}
ign_file="$work/home-alice/accounts/$srv/alice.ignore"
tm new-session -d -s ign -x 100 -y 30 "$(ign_cmd)" \; set-option -t ign remain-on-exit on
wait_input "alice@#general>" ign && ok || { bad "ign: no prompt"; dump ign; }
tm send-keys -t ign -l "hi @b"; tm send-keys -t ign Tab
wait_input "alice@#general> hi @bob" ign && ok || { bad "ign: Tab did not complete @bob"; dump ign; }
tm send-keys -t ign C-u
tm send-keys -t ign -l "/ignore bob"; tm send-keys -t ign Enter
wait_screen '^-- ignoring bob: their messages, direct messages, joins and leaves are not shown \(/unignore bob\)$' ign && ok || { bad "ign: /ignore bob not confirmed"; dump ign; }
[ "$(cat "$ign_file" 2>/dev/null)" = "bob" ] && ok || bad "the ignore file does not hold bob: '$(cat "$ign_file" 2>&1)'"
mode_is "the ignore file" "$ign_file" 600
printf '%s\n' "/msg alice psst while ignored" "alice: bob speaks while ignored" >"$work/bob-says.txt"
SECURECHAT_HOME="$work/home-bob" "$bin" chat --server "$srv" <"$work/bob-says.txt" >/dev/null 2>&1 && ok || bad "bob could not speak"
ign_say "marker one"
tm capture-pane -p -S - -t ign | sed 's/ *$//' | sed -n '/^-- ignoring bob/,$p' | tail -n +2 >"$work/ign1.txt"
grep -q 'marker one$' "$work/ign1.txt" && ok || { bad "ign: no marker after the /ignore line"; show "$work/ign1.txt"; }
grep -E 'bob|psst' "$work/ign1.txt" && { bad "ign: something of bob's was shown while he is ignored"; show "$work/ign1.txt"; } || ok
# (#ops too: alice is in it from her first session, and a start joins the rooms she is in, PROTOCOL.md §7.14.)
[ "$(status_row ign)" = "[1:#general*] [2:#ops]" ] && ok || { bad "ign: status row while bob is ignored: '$(status_row ign)'"; dump ign; }
# The list holds after a restart: bob's lines are not in the history either, nor his new ones.
ign_quit
tm new-session -d -s ign -x 100 -y 30 "$(ign_cmd)" \; set-option -t ign remain-on-exit on
wait_input "alice@#general>" ign && ok || { bad "ign (restarted): no prompt"; dump ign; }
bob_says "bob speaks after the restart"
ign_say "marker two"
# Her other session has read everything since (one device): the restart catches up on nothing; /history shows the room's past.
tm send-keys -t ign -l "/history 20"; tm send-keys -t ign Enter
wait_screen '^\[history\] [0-9]{2}:[0-9]{2} <alice> marker two$' ign || { bad "ign (restarted): no answer to /history"; dump ign; }
tm capture-pane -p -S - -t ign | sed 's/ *$//' >"$work/ign2.txt"
grep -qE '^\[history\] [0-9]{2}:[0-9]{2} <alice> marker one$' "$work/ign2.txt" && ok || { bad "ign (restarted): the room's history is not shown"; show "$work/ign2.txt"; }
grep -E '<bob>|bob (joined|left)|psst' "$work/ign2.txt" && { bad "ign (restarted): bob is shown though still ignored"; show "$work/ign2.txt"; } || ok
tm send-keys -t ign -l "/ignore"; tm send-keys -t ign Enter
wait_screen '^-- you ignore bob$' ign && ok || { bad "ign: /ignore does not list bob"; dump ign; }
tm send-keys -t ign -l "/unignore bob"; tm send-keys -t ign Enter
wait_screen '^-- no longer ignoring bob$' ign && ok || { bad "ign: /unignore bob not confirmed"; dump ign; }
[ -e "$ign_file" ] && [ ! -s "$ign_file" ] && ok || bad "the ignore file is not empty after /unignore"
bob_says "bob is heard again"
wait_screen '^[0-9]{2}:[0-9]{2} <bob> bob is heard again$' ign && ok || { bad "ign: bob not shown after /unignore"; dump ign; }
ign_quit
# A broken list: one line saying which file and line, exit 2, no screen and no trace.
printf 'bob\nNot A Name\n' >"$ign_file"
tm new-session -d -s ign -x 100 -y 30 "$(ign_cmd)" \; set-option -t ign remain-on-exit on
if wait_file "$work/ign.exit"; then [ "$(cat "$work/ign.exit")" = "EXIT:2" ] && ok || bad "ign with a broken list: $(cat "$work/ign.exit"), want EXIT:2"; else bad "ign with a broken list did not end"; dump ign; fi
# With the scrollback (-S -): the error and its hint wrap, and can push the first row up.
tm capture-pane -p -S - -t ign | grep -qF "securechat: $ign_file: line 2" && ok || { bad "ign: the broken list is not named with its line"; dump ign; }
screen ign | grep -qE '^\s+at |Error:|alice@#general>' && { bad "ign: a trace or the chat screen with a broken list"; dump ign; } || ok
tm kill-session -t ign

# /quit ends the client with exit 0; the pane's process is dead.
tm send-keys -t alice -l "/quit"; tm send-keys -t alice Enter
if wait_file "$work/alice.exit"; then
  [ "$(cat "$work/alice.exit")" = "EXIT:0" ] && ok || { bad "alice: /quit gave $(cat "$work/alice.exit"), want EXIT:0"; dump; }
else
  bad "alice: /quit did not end the client"; dump
fi
dead=""
for _ in $(seq 1 50); do
  dead=$(tm list-panes -t alice:0 -F '#{pane_dead}' 2>/dev/null)
  [ "$dead" = 1 ] && break
  sleep 0.1
done
[ "$dead" = 1 ] && ok || bad "alice's pane is not dead after /quit (pane_dead=$dead)"
wait_for "$work/bob.out" '^\{"type":"left","room":"general","user":"alice"' && ok || bad "bob did not see alice leave"
screen alice | grep -qE '^\s+at |Error:' && { bad "alice's pane shows an error"; dump; } || ok

finish tmux.sh
