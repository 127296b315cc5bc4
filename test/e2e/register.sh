#!/usr/bin/env bash
# Drives `securechat register` at a real terminal (tmux on a socket of its
# own), in the order people expect from ssh: the unknown host key is asked
# about first, then the server says whether the name is free, and only then
# is the password asked — checked against the policy as soon as it is typed,
# asked again when refused or mistyped (3 tries in all), never shown. A taken
# name ends it before any password is asked; three refused passwords end it
# with the policy's reason (exit 2). Everything lives in a temporary
# directory; the server and the tmux server are stopped on every exit path;
# every wait is a bounded poll.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"

tmux_begin register.sh

# The pane as text, scrollback included, trailing spaces trimmed.
screen() { tm capture-pane -p -S - -t "$1" | sed 's/ *$//'; }
# wait_screen TARGET PATTERN [COUNT]: until COUNT (default 1) rows match the extended regex; at most 100 × 0.1 s.
wait_screen() {
  local n
  for _ in $(seq 1 100); do
    n=$(screen "$1" | grep -cE -- "$2")
    [ "${n:-0}" -ge "${3:-1}" ] && return 0
    sleep 0.1
  done
  return 1
}
dump() { echo "    --- pane $1 ---"; screen "$1" | show; }
# type TARGET TEXT: types TEXT (literally) and Enter.
type_line() { tm send-keys -t "$1" -l "$2"; tm send-keys -t "$1" Enter; }
q() { printf '%q' "$1"; }
# start NAME USER: `register USER` in a new tmux session NAME, with its own home; the exit status goes to $work/NAME.exit.
start() {
  local cmd="SECURECHAT_HOME=$(q "$work/home-$1") NO_COLOR=1 $(q "$bin") register $2 --server $srv; echo EXIT:\$? > $(q "$work/$1.exit")"
  tm new-session -d -s "$1" -x 100 -y 30 "$cmd" \; set-option -t "$1" remain-on-exit on
}
# expect_exit NAME CODE: passes when the register in session NAME ends with exit status CODE.
expect_exit() {
  if ! wait_for "$work/$1.exit" "^EXIT:"; then bad "$1: register did not end"; dump "$1"; return; fi
  if [ "$(cat "$work/$1.exit")" = "EXIT:$2" ]; then ok; else bad "$1: $(cat "$work/$1.exit"), want EXIT:$2"; dump "$1"; fi
}
# row_of TARGET PATTERN: the number of the first row matching the extended regex (0 if none).
row_of() { screen "$1" | grep -nE -- "$2" | head -n 1 | cut -d: -f1 | grep . || echo 0; }

start_server "$work/data"
srv="127.0.0.1:$port"
fp=$(grep -o '"fingerprint":"SHA256:[^"]*' "$work/server.log" | head -1 | cut -d'"' -f4)
input=$'correct horse battery staple\n'
run "register alice (script)" 0 env SECURECHAT_HOME="$work/home-alice" "$bin" register alice --server "$srv" --password-stdin --accept-new-host

# bob: host key, then the name, then the password; a short one and a mistyped
# confirmation are asked again; the third try succeeds.
good="a long enough passphrase for him"
start bob bob
wait_screen bob "^The authenticity of $srv can't be established\.$" && ok || { bad "bob: no host key question"; dump bob; }
screen bob | grep -qF "fingerprint is $fp." && ok || { bad "bob: the question does not show the fingerprint"; dump bob; }
wait_screen bob '\(yes/no\)' && ok || { bad "bob: no (yes/no) prompt"; dump bob; }
screen bob | grep -qE 'Password|the name' && { bad "bob: asked about the name or password before the host key"; dump bob; } || ok
type_line bob yes
wait_screen bob "^the name \"bob\" is free at $srv$" && ok || { bad "bob: the name check is not shown"; dump bob; }
wait_screen bob '^Password:' && ok || { bad "bob: no password prompt"; dump bob; }
type_line bob "tiny pw"
wait_screen bob '^password: too short \(7 characters; at least 12, a few words make a good one\); try again$' && ok || { bad "bob: the short password is not refused at once"; dump bob; }
wait_screen bob '^Password:' 2 && ok || { bad "bob: the password is not asked again"; dump bob; }
screen bob | grep -q '^Repeat the password:' && { bad "bob: a refused password was asked to be repeated"; dump bob; } || ok
type_line bob "$good"
wait_screen bob '^Repeat the password:' && ok || { bad "bob: no confirmation prompt"; dump bob; }
type_line bob "not what was typed"
wait_screen bob '^the two passwords differ; try again$' && ok || { bad "bob: a mistyped confirmation is not said"; dump bob; }
wait_screen bob '^Password:' 3 && ok || { bad "bob: the password is not asked a third time"; dump bob; }
type_line bob "$good"
wait_screen bob '^Repeat the password:' 2 || { bad "bob: no second confirmation prompt"; dump bob; }
type_line bob "$good"
expect_exit bob 0
wait_screen bob "^registered bob at $srv" && ok || { bad "bob: not registered"; dump bob; }
host_row=$(row_of bob "^The authenticity of")
name_row=$(row_of bob '^the name "bob" is free')
pw_row=$(row_of bob '^Password:')
[ "$host_row" -gt 0 ] && [ "$host_row" -lt "$name_row" ] && [ "$name_row" -lt "$pw_row" ] && ok || { bad "bob: not in the order host key ($host_row), name ($name_row), password ($pw_row)"; dump bob; }
screen bob | grep -qF -e "$good" -e "tiny pw" -e "not what was typed" && { bad "bob: a typed password is on the screen"; dump bob; } || ok
grep -q "^server = \"$srv\"$" "$work/home-bob/config.toml" && grep -q '^user = "bob"$' "$work/home-bob/config.toml" && ok || { bad "bob: config.toml does not hold the defaults"; show "$work/home-bob/config.toml"; }
# The defaults work: chat alone, as bob, at that server.
input=$'hello from the defaults\n'
run "bob chats with no flags" 0 env SECURECHAT_HOME="$work/home-bob" "$bin" chat
expect "bob's line is acknowledged" '"type":"ack"'

# carol wants "alice": told after the host key, before any password.
start carol alice
wait_screen carol '\(yes/no\)' || { bad "carol: no host key question"; dump carol; }
type_line carol yes
expect_exit carol 1
wait_screen carol "^securechat: the name \"alice\" is taken at $srv$" && ok || { bad "carol: the taken name is not said"; dump carol; }
wait_screen carol '^hint: choose another user name$' && ok || { bad "carol: no hint"; dump carol; }
screen carol | grep -q 'Password' && { bad "carol: a password was asked for a taken name"; dump carol; } || ok
[ -e "$work/home-carol/accounts/$srv/alice.key" ] && bad "carol: an identity key was left behind" || ok

# dave types three passwords the policy refuses: the third ends it with the reason (exit 2).
start dave dave
wait_screen dave '\(yes/no\)' || { bad "dave: no host key question"; dump dave; }
type_line dave yes
for i in 1 2 3; do
  wait_screen dave '^Password:' "$i" || { bad "dave: password prompt $i missing"; dump dave; }
  type_line dave "dave"
done
expect_exit dave 2
wait_screen dave '^securechat: password: too short \(4 characters' && ok || { bad "dave: the last refusal is not the error"; dump dave; }
[ "$(screen dave | grep -c '; try again$')" = 2 ] && ok || { bad "dave: want two 'try again' lines"; dump dave; }
[ -e "$work/home-dave/accounts/$srv/dave.key" ] && bad "dave: an identity key was left behind" || ok

finish register.sh
