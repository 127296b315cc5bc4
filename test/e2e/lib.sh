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
e2e_cluster=${SECURECHAT_E2E_CLUSTER:-} # cluster mode: the number of nodes, or empty for one server

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
  if [ -n "$e2e_cluster" ]; then cluster_start "$@"; return; fi
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
  if [ -n "$e2e_cluster" ]; then cluster_stop; return; fi
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
  if [ -n "$e2e_cluster" ]; then cluster_cleanup; fi
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

# transcript_verify DATA ARGS...: `transcript verify` of the server's transcript
# in DATA (DATA/transcript; in cluster mode the cluster's, in PostgreSQL).
transcript_verify() {
  local data=$1; shift
  if [ -n "$e2e_cluster" ]; then cluster_env "$data" "$bin" transcript verify "$@"; else "$bin" transcript verify "$data/transcript" "$@"; fi
}
# transcript_export DATA ARGS...: `transcript export` of the server's transcript in DATA, as transcript_verify.
transcript_export() {
  local data=$1; shift
  if [ -n "$e2e_cluster" ]; then cluster_env "$data" "$bin" transcript export "$@"; else "$bin" transcript export --data "$data" "$@"; fi
}
# single_node_only NAME: in cluster mode, says loudly that the check NAME does
# not apply to a cluster and returns 1 (the caller skips it); else returns 0.
single_node_only() {
  [ -z "$e2e_cluster" ] && return 0
  echo "!!! SKIPPED in cluster mode: $1"
  return 1
}

# --- Cluster mode ----------------------------------------------------------------------------
# SECURECHAT_E2E_CLUSTER=N: start_server DATA [PORT [FLAGS...]] starts, once
# per script, PostgreSQL and Redis (test/e2e/engines.ts: their URLs stay in
# a 0600 file and in this shell's variables, and reach a process only
# through its environment, never argv); then, per data directory, a database
# of its own (so a second DATA is a fresh server with its own accounts and
# key, as on one node), N `serve --json` nodes on it sharing DATA/host_key
# (made by the first node's first start; host_key.pub beside it, as on one
# node), their logs appended to $work/server.log, and in front of them a
# round-robin balancer (test/e2e/balancer.ts) on PORT: $port is the
# balancer's, so `srv=127.0.0.1:$port` is one address whose connections land
# on the nodes in turn: the script's users, and each user's successive
# commands, are spread over the nodes. $server_pid is the core's (the node
# holding the writer lease): a script's `kill -9 $server_pid` kills the core,
# and the next start_server on the same DATA starts only the nodes that are
# down and returns once a core is elected again. stop_server stops every node
# (each must exit 0) and the balancer.
cl_data=""     # the DATA of the cluster running now
cl_pids=()     # its nodes' PIDs, by index (1..N)
cl_bal=""      # the balancer's PID
cl_db_base=""  # the PostgreSQL URL (with its password) of the engines, database aside
cl_redis=""    # the Redis URL (with its password)
declare -A cl_dbs=() # DATA -> its database's name
cl_db=""       # the database's name cluster_db found

# cluster_engines: starts the engines once (a failed check and exit 1 if they
# do not start; exit 0 with a loud SKIP where they are not installed, unless CI=true).
cluster_engines() {
  [ -n "$cl_redis" ] && return 0
  [[ $e2e_cluster =~ ^[0-9]+$ ]] && [ "$e2e_cluster" -ge 2 ] || { bad "SECURECHAT_E2E_CLUSTER=$e2e_cluster: want a number of nodes, 2 or more"; exit 1; }
  bun "$(dirname "${BASH_SOURCE[0]}")/engines.ts" "$work/engines.env" >"$work/engines.log" 2>&1 &
  pids+=("$!")
  local epid=$!
  for _ in $(seq 1 1200); do grep -qE '^(ready|missing)' "$work/engines.log" 2>/dev/null && break; kill -0 "$epid" 2>/dev/null || break; sleep 0.1; done
  if grep -q '^missing' "$work/engines.log"; then
    if [ "${CI:-}" = true ]; then bad "cluster mode: postgresql and redis-server are not installed"; exit 1; fi
    echo "!!! SKIPPING (cluster mode): postgresql and/or redis-server not installed (sudo apt-get install -y postgresql redis-server)"; exit 0
  fi
  grep -q '^ready' "$work/engines.log" || { bad "cluster mode: the engines did not start"; show "$work/engines.log"; exit 1; }
  cl_db_base=$(sed -n 's|^SECURECHAT_DATABASE_URL=\(postgres://[^/]*/\).*|\1|p' "$work/engines.env")
  cl_redis=$(sed -n 's|^SECURECHAT_REDIS_URL=||p' "$work/engines.env")
}
# cluster_db DATA: sets $cl_db to the name of DATA's database, made at its first use.
cluster_db() {
  if [ -z "${cl_dbs[$1]:-}" ]; then
    local name="e2e${#cl_dbs[@]}"
    (export SECURECHAT_DATABASE_URL="${cl_db_base}postgres"; exec bun "$(dirname "${BASH_SOURCE[0]}")/pgdb.ts" "$name") >"$work/pgdb.log" 2>&1 ||
      { bad "cluster mode: could not create the database for $1"; show "$work/pgdb.log"; exit 1; }
    cl_dbs[$1]=$name
  fi
  cl_db=${cl_dbs[$1]}
}
# cluster_env DATA COMMAND...: COMMAND with SECURECHAT_DATABASE_URL (DATA's database) and SECURECHAT_REDIS_URL in its environment.
cluster_env() {
  cluster_db "$1"; shift
  (export SECURECHAT_DATABASE_URL="$cl_db_base$cl_db" SECURECHAT_REDIS_URL="$cl_redis"; exec "$@")
}
# cluster_node I FLAGS...: starts node I on $cl_data in the background and waits for its listening line.
cluster_node() {
  local i=$1 key=() p; shift
  [ -f "$cl_data/host_key" ] && key=(--host-key "$cl_data/host_key")
  cluster_db "$cl_data"
  (export SECURECHAT_DATABASE_URL="$cl_db_base$cl_db" SECURECHAT_REDIS_URL="$cl_redis"; exec "$bin" serve --port 0 --data "$cl_data" "${key[@]}" --json "$@") >>"$work/server.log" 2>&1 &
  cl_pids[i]=$!
  for _ in $(seq 1 300); do
    p=$(grep -o "\"event\":\"listening\",\"address\":\"127.0.0.1:[0-9]*\",.*\"pid\":${cl_pids[i]}[,}]" "$work/server.log" | grep -o '127.0.0.1:[0-9]*' | grep -o '[0-9]*$')
    [ -n "$p" ] && { echo "$p" >>"$work/backends.new"; return 0; }
    kill -0 "${cl_pids[i]}" 2>/dev/null || break
    sleep 0.1
  done
  bad "cluster node $i did not start"; show "$work/server.log"; exit 1
}
# cluster_core: waits (up to 60 s) until a live node holds the writer lease; sets $server_pid to its PID.
cluster_core() {
  local line node pid i
  for _ in $(seq 1 600); do
    line=$(grep '"event":"core_elected"' "$work/server.log" | tail -1)
    if [[ $line =~ \"node\":\"?([^\",}]*) ]]; then
      node=${BASH_REMATCH[1]}
      pid=$(grep "\"event\":\"listening\".*\"node\":\"\?$node\"\?," "$work/server.log" | grep -o '"pid":[0-9]*' | grep -o '[0-9]*' | tail -1)
      for i in "${!cl_pids[@]}"; do
        if [ "${cl_pids[i]}" = "$pid" ] && kill -0 "$pid" 2>/dev/null; then server_pid=$pid; return 0; fi
      done
    fi
    sleep 0.1
  done
  bad "cluster mode: no core elected"; show "$work/server.log"; exit 1
}
# cluster_start DATA [PORT [FLAGS...]]: start_server in cluster mode (above).
cluster_start() {
  local data=$1 want=${2:-0} i p
  shift; [ $# -gt 0 ] && shift
  cluster_engines
  : >"$work/backends.new"
  if [ "$data" = "$cl_data" ] && [ -n "$cl_bal" ] && kill -0 "$cl_bal" 2>/dev/null; then
    # The same cluster, some of its nodes killed: start those again, keep the others.
    for i in "${!cl_pids[@]}"; do
      if kill -0 "${cl_pids[i]}" 2>/dev/null; then
        grep -o "\"event\":\"listening\",\"address\":\"127.0.0.1:[0-9]*\",.*\"pid\":${cl_pids[i]}[,}]" "$work/server.log" | grep -o '127.0.0.1:[0-9]*' | grep -o '[0-9]*$' >>"$work/backends.new"
      else
        cluster_node "$i" "$@"
      fi
    done
    mv "$work/backends.new" "$work/backends"
    # If the core was killed: until a live node is elected (the newest core_elected line is a live node's).
    cluster_core
    return 0
  fi
  cat "$work/server.log" >>"$work/server.all" 2>/dev/null; : >"$work/server.log"
  cl_data=$data; cl_pids=(); mkdir -p "$data"
  # The first node first: it makes the host key on DATA's first start, and is elected the core.
  cluster_node 1 "$@"
  for i in $(seq 2 "$e2e_cluster"); do cluster_node "$i" "$@"; done
  mv "$work/backends.new" "$work/backends"
  bun "$(dirname "${BASH_SOURCE[0]}")/balancer.ts" "$want" "$work/backends" >"$work/balancer.log" 2>&1 &
  cl_bal=$!
  for _ in $(seq 1 300); do
    p=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$work/balancer.log" 2>/dev/null)
    [ -n "$p" ] && break
    sleep 0.1
  done
  [ -n "$p" ] || { bad "cluster mode: the balancer did not listen on ${want}"; show "$work/balancer.log"; exit 1; }
  port=$p
  cluster_core
}
# cluster_stop: stop_server in cluster mode: SIGTERM to every node (each must exit 0), then to the balancer.
# The nodes that are not the core first, then the core ($server_pid): each node's clients are told
# server_shutdown by their own node, as from a single server (stopped at once, a client on an edge
# could first be told core_changed by its edge, the core having gone).
cluster_stop() {
  local i rc pass
  for pass in edges core; do
    for i in "${!cl_pids[@]}"; do
      if [ "$pass" = edges ] && [ "${cl_pids[i]}" = "$server_pid" ]; then continue; fi
      if [ "$pass" = core ] && [ "${cl_pids[i]}" != "$server_pid" ]; then continue; fi
      kill -TERM "${cl_pids[i]}" 2>/dev/null
    done
    for i in "${!cl_pids[@]}"; do
      if [ "$pass" = edges ] && [ "${cl_pids[i]}" = "$server_pid" ]; then continue; fi
      if [ "$pass" = core ] && [ "${cl_pids[i]}" != "$server_pid" ]; then continue; fi
      wait "${cl_pids[i]}"; rc=$?
      if [ "$rc" = 0 ]; then ok; else bad "cluster node $i: exit $rc after SIGTERM"; show "$work/server.log"; fi
    done
  done
  kill -TERM "$cl_bal" 2>/dev/null; wait "$cl_bal" 2>/dev/null
  cat "$work/balancer.log" >>"$work/balancer.all"; : >"$work/balancer.log"
  cl_pids=(); cl_bal=""; server_pid=""
}
# cluster_cleanup: for the exit trap: the nodes and the balancer (the engines are in $pids).
cluster_cleanup() {
  local p
  for p in "${cl_pids[@]}" $cl_bal; do kill -TERM "$p" 2>/dev/null; done
  for p in "${cl_pids[@]}" $cl_bal; do wait "$p" 2>/dev/null; done
  server_pid=""
}

# finish NAME: prints "NAME: N passed, M failed" and exits, 1 if any check failed.
finish() {
  if [ -n "$e2e_cluster" ] && [ -n "$work" ]; then
    echo "  (cluster mode, $e2e_cluster nodes: connections per node port: $(cat "$work/balancer.all" "$work/balancer.log" 2>/dev/null | grep '^to ' | sort | uniq -c | awk '{printf "%s:%s ", $3, $1}'))"
  fi
  if [ -n "$e2e_cluster" ] && [ "$fail" != 0 ] && cat "$work/server.all" "$work/server.log" 2>/dev/null | grep -qE '"level":"error"|"event":"internal_error"'; then
    echo "  the nodes' errors:"; cat "$work/server.all" "$work/server.log" 2>/dev/null | grep -E '"level":"error"|"event":"internal_error"' | tail -20 | show
  fi
  echo "$1: $passed passed, $fail failed"
  if [ "$fail" = 0 ]; then exit 0; fi
  exit 1
}
