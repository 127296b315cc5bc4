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
# Everything lives in a temporary directory; the server, bob's listener and
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
# wait_screen PATTERN [TARGET]: until some row matches the extended regex; at most 100 × 0.1 s.
wait_screen() {
  for _ in $(seq 1 100); do
    screen "${2:-alice}" | grep -qE -- "$1" && return 0
    sleep 0.1
  done
  return 1
}
# wait_input TEXT [TARGET]: until the input row is exactly TEXT; at most 100 × 0.1 s.
wait_input() {
  for _ in $(seq 1 100); do
    [ "$(input_row "${2:-alice}")" = "$1" ] && return 0
    sleep 0.1
  done
  return 1
}
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
if wait_input "alice>"; then ok; else bad "alice: no prompt"; dump; fi
wait_screen '^-- connected to '"$srv"' as alice$' && ok || { bad "alice: no connected line"; dump; }
wait_for "$work/bob.out" '^\{"type":"joined","room":"general","user":"alice"' && ok || bad "bob did not see alice join"

# Ctrl-C on a typed line drops the line, not the client.
tm send-keys -t alice -l "to be dropped"
wait_input "alice> to be dropped" && ok || { bad "alice: typed text not shown"; dump; }
tm send-keys -t alice C-c
wait_input "alice>" && ok || { bad "alice: Ctrl-C did not clear the line"; dump; }

# alice types half a line, key by key, while bob floods the room with 40 lines
# (more than the 30 rows, so the screen scrolls under the input row).
tm send-keys -t alice -l "half"
wait_input "alice> half" || { bad "alice: 'half' not shown"; dump; }
printf 'bob line %02d\n' $(seq 1 40) >"$work/bob-lines.txt"
SECURECHAT_HOME="$work/home-bob" "$bin" chat --server "$srv" <"$work/bob-lines.txt" >"$work/bob-send.out" 2>&1 &
bob_send=$!
pids+=("$bob_send")
for ch in " " t y p e d; do tm send-keys -t alice -l "$ch"; sleep 0.05; done
wait_exit "$bob_send" 200
if [ "$rc" = 0 ]; then ok; else bad "bob's sender: exit $rc, want 0"; show "$work/bob-send.out"; fi
if wait_screen '^[0-9]{2}:[0-9]{2} <bob> bob line 40$'; then ok; else bad "alice: bob's last line not shown"; dump; fi
wait_input "alice> half typed" # (bob's listener stays, so no "bob left" line follows)
screen alice >"$work/screen1.txt"
if [ "$(tail -n 1 "$work/screen1.txt")" = "alice> half typed" ]; then ok; else bad "the last row is not the intact input row"; show "$work/screen1.txt"; fi
[ "$(wc -l <"$work/screen1.txt")" = 30 ] && ok || bad "capture has $(wc -l <"$work/screen1.txt") rows, want 30"
[ "$(grep -c 'half' "$work/screen1.txt")" = 1 ] && ok || { bad "the typed text appears more than once (garbled)"; show "$work/screen1.txt"; }
[ "$(grep -c 'alice>' "$work/screen1.txt")" = 1 ] && ok || { bad "the prompt appears more than once"; show "$work/screen1.txt"; }
cursor=$(tm display-message -p -t alice '#{cursor_y},#{cursor_x}')
[ "$cursor" = "29,17" ] && ok || bad "cursor at $cursor, want 29,17 (end of the input row)"
# Every row above the input is a whole message line, in order: bob's lines end the screen.
grep -E '<bob> bob line [0-9]+$' "$work/screen1.txt" | grep -oE '[0-9]+$' >"$work/order.txt"
sort -n -c "$work/order.txt" 2>/dev/null && [ "$(tail -n 1 "$work/order.txt")" = 40 ] && ok || { bad "bob's lines are not in order above the input row"; show "$work/screen1.txt"; }
bad_rows=$(head -n 29 "$work/screen1.txt" | grep -vE '^$|^[0-9]{2}:[0-9]{2} <bob> bob line [0-9]{2}$|^[0-9]{2}:[0-9]{2} -- bob (joined|left) general$|^-- ' || true)
[ -z "$bad_rows" ] && ok || { bad "unexpected rows above the input row:"; show <<<"$bad_rows"; }

# Enter sends the line; bob's listener gets it.
tm send-keys -t alice Enter
if wait_for "$work/bob.out" '^\{"type":"message","room":"general".*"from":"alice","text":"half typed"\}$'; then ok; else bad "bob did not receive \"half typed\""; show "$work/bob.out"; fi
wait_screen '^[0-9]{2}:[0-9]{2} <alice> half typed$' && ok || { bad "alice: own line not shown"; dump; }
wait_input "alice>" && ok || { bad "alice: input row not cleared after Enter"; dump; }

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
if wait_input "alice>" alice:color; then ok; else bad "colour window: no prompt"; dump alice:color; fi
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
for target in narrow narrow:color; do wait_input "alice>" "$target" && ok || { bad "$target: no prompt"; dump "$target"; }; done
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
  unmarked=$(grep -vE '^$|^(\[history\] )?[0-9]{2}:[0-9]{2} (<[a-z]+>|-- )|^-- |^  ↳ |^alice>$' "$work/forged.txt" || true)
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
