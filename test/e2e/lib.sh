# shellcheck shell=bash
# Shared harness of the end-to-end scripts in test/e2e. Each script sources it
# after `set -uo pipefail` and after setting $bin (the binary under test):
#
#   . "$(dirname "$0")/lib.sh"
#   begin                      # only scripts that start processes: $work + traps
#   tmux_begin NAME.sh         # instead of begin, for scripts that drive tmux (tm ...)
#   pids+=("$some_pid")        # extra processes to stop on every exit path
#   cleanup_extra() { ...; }   # optional: called first by the exit trap
#   start_server "$work/data"  # sets $server_pid and $port
#   chat_bg HOME USER NAME     # a scripted chat kept connected in the background
#   run "name" 0 "$bin" ...; expect "name" "needle"; check "name" test...
#   finish NAME.sh             # "NAME.sh: N passed, M failed"; exit 1 on failures
#
# Sourcing only defines the variables and functions below; nothing runs until
# a script calls them. Every wait is a bounded poll.

passed=0      # checks that passed
fail=0        # checks that failed
out=""        # combined stdout and stderr of the last `run`
input=""      # what `run` feeds to the command's stdin
server_pid="" # the server started by start_server, until stop_server
port=""       # the port that server listens on
pids=()       # further processes the script started; the exit trap stops them
work=""       # the temporary directory made by begin

# ok: counts a passed check.
ok() { passed=$((passed+1)); }
# bad MESSAGE...: counts a failed check and prints "FAIL MESSAGE".
bad() { echo "FAIL $*"; fail=$((fail+1)); }
# show [FILE...]: prints the files (or stdin) indented, to explain a failure.
show() { sed 's/^/    /' "$@"; }

# run NAME WANT COMMAND...: runs COMMAND with $input on stdin, keeps its output
# in $out; passes when it exits with status WANT, else prints the output.
run() {
  local name=$1 want=$2 rc; shift 2
  out=$(printf '%s' "${input:-}" | "$@" 2>&1); rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$name: exit $rc, want $want"; show <<<"$out"; fi
}
# expect NAME NEEDLE: passes when $out (of the last run) contains the fixed string NEEDLE.
expect() { if grep -qF -- "$2" <<<"$out"; then ok; else bad "$1: output lacks \"$2\""; show <<<"$out"; fi; }
# refute NAME NEEDLE: passes when $out (of the last run) does not contain the fixed string NEEDLE.
refute() { if grep -qF -- "$2" <<<"$out"; then bad "$1: output contains \"$2\""; show <<<"$out"; else ok; fi; }
# check NAME COMMAND...: passes when COMMAND succeeds.
check() {
  local name=$1; shift
  if "$@"; then ok; else bad "$name"; fi
}
# mode_is NAME PATH MODE: passes when PATH has the octal permissions MODE (e.g. 600).
mode_is() {
  local m; m=$(stat -c %a "$2" 2>/dev/null)
  if [ "$m" = "$3" ]; then ok; else bad "$1: $2 has mode ${m:-none}, want $3"; fi
}

# wait_for FILE PATTERN [COUNT [TRIES]]: until FILE has COUNT (default 1) lines matching
# the extended regex PATTERN; at most TRIES (default 100) × 0.1 s; returns 1 on timeout.
wait_for() {
  local n
  for _ in $(seq 1 "${4:-100}"); do
    n=$(grep -cE -- "$2" "$1" 2>/dev/null)
    [ "${n:-0}" -ge "${3:-1}" ] && return 0
    sleep 0.1
  done
  return 1
}
# wait_exit PID [TRIES]: until the process has ended (at most TRIES, default 100,
# × 0.1 s); then its exit status in $rc, or rc=timeout and return 1.
wait_exit() {
  for _ in $(seq 1 "${2:-100}"); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then rc=timeout; return 1; fi
  wait "$1"; rc=$?
}

# as HOME COMMAND...: COMMAND with SECURECHAT_HOME=$work/HOME, no colours, at most 60 s.
as() { local h=$1; shift; env SECURECHAT_HOME="$work/$h" NO_COLOR=1 timeout 60 "$@"; }
# register NAME: registers NAME at $srv with the password $PW, its home $work/NAME; a failed check if refused.
register() { printf '%s\n' "$PW" | as "$1" "$bin" register "$1" --server "$srv" --password-stdin --accept-new-host >/dev/null 2>&1 || bad "register $1"; }

# start_server DATA_DIR [PORT [FLAGS...]]: `$bin serve --json FLAGS` in the background on PORT
# (default 0: any free one), its log in $work/server.log; sets $server_pid and
# $port from the log's "listening" line. If it does not listen within 100 ×
# 0.05 s: a failed check, the log, and exit 1 (the trap stops the server).
start_server() {
  : >"$work/server.log" # a restart must not find the previous server's line
  "$bin" serve --port "${2:-0}" --data "$1" --json "${@:3}" >"$work/server.log" 2>&1 &
  server_pid=$!
  port=$(listening_port "$work/server.log") && return 0
  bad "server did not start"; show "$work/server.log"; exit 1
}
# listening_port LOG: the port of the server logging to LOG, once its "listening"
# line is there (at most 100 × 0.05 s); nothing and status 1 if it does not come.
listening_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(grep -o '"event":"listening","address":"127.0.0.1:[0-9]*' "$1" | grep -o '[0-9]*$')
    [ -n "$p" ] && { echo "$p"; return 0; }
    sleep 0.05
  done
  return 1
}
# stop_server: SIGTERM to the server; passes when it exits with status 0.
stop_server() {
  local rc
  kill -TERM "$server_pid"; wait "$server_pid"; rc=$?
  server_pid=""
  if [ "$rc" = 0 ]; then ok; else bad "server exit $rc after SIGTERM"; show "$work/server.log"; fi
}

# chat_bg HOME USER NAME: USER's `chat --json` at $srv with SECURECHAT_HOME=HOME in
# the background, its stdin a fifo held open by a sleep of ours (so it stays
# connected), its output in $work/NAME.out and .err; sets NAME_pid and
# NAME_holder (both stopped by the exit trap); passes once it is in a room.
chat_bg() {
  mkfifo "$work/$3.in"
  sleep 300 >"$work/$3.in" &
  pids+=("$!"); printf -v "${3}_holder" '%s' "$!"
  env SECURECHAT_HOME="$1" NO_COLOR=1 timeout 120 "$bin" chat -u "$2" --server "$srv" --json <"$work/$3.in" >"$work/$3.out" 2>"$work/$3.err" &
  pids+=("$!"); printf -v "${3}_pid" '%s' "$!"
  if wait_for "$work/$3.out" '^\{"type":"room"'; then ok; else bad "$3: no room event"; show "$work/$3.out" "$work/$3.err"; fi
}

# cleanup: the exit trap: cleanup_extra (if the script defines it), then
# SIGTERM to every PID in $pids and to the server, waiting for each; removes $work.
cleanup() {
  local p
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null; fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
}
# begin: makes $work (a fresh temporary directory) and installs the traps:
# cleanup on every exit, and exit 130 on SIGINT/SIGTERM (so cleanup runs then too).
begin() {
  work=$(mktemp -d)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# tmux_begin NAME: for the scripts that drive a terminal: without tmux, SKIP
# (exit 0), or under CI=true a failure; else `begin`, and `tm ARGS...` runs
# tmux on this run's own socket without any user configuration, whose server
# the exit trap stops first (and with it every pane).
tmux_begin() {
  if ! command -v tmux >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
      bad "tmux is not installed (CI=true: install it, e.g. apt-get install -y tmux)"
      finish "$1"
    fi
    echo "SKIP: tmux not installed (apt-get install -y tmux to run this test)"
    exit 0
  fi
  unset TMUX TMUX_PANE
  begin
  sock="securechat-e2e-$$-$RANDOM"
  tm() { tmux -L "$sock" -f /dev/null "$@"; }
  cleanup_extra() { tm kill-server 2>/dev/null; }
}

# finish NAME: prints "NAME: N passed, M failed" and exits, 1 if any check failed.
finish() {
  echo "$1: $passed passed, $fail failed"
  if [ "$fail" = 0 ]; then exit 0; fi
  exit 1
}
