#!/usr/bin/env bash
# Drives the compiled binary through an operator's mistakes with `serve`:
# a second server on the same data directory (refused, naming the first's
# pid, the transcript untouched), a server killed with SIGKILL (the next one
# starts, the transcript verifies), a --host that is not this machine's, a
# port in use, a --data that is a file, and permissions (a data directory
# out of reach, a port below 1024). Each is one line and a hint, exit 1,
# never "internal error".
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

# no_internal NAME: passes when $out (of the last run) is not reported as a bug.
no_internal() {
  if grep -qE 'internal error|report it|^\s+at ' <<<"$out"; then bad "$1: reported as an internal error"; show <<<"$out"; else ok; fi
}
digest() { cat "$work/data/transcript"/*.jsonl | sha256sum; }

# --- one server per data directory -------------------------------------
start_server "$work/data"
first=$server_pid
before=$(digest)
run "a second serve on the same --data refuses" 1 "$bin" serve --port 0 --data "$work/data" --json
expect "…naming the running one's pid" "$work/data is in use by another securechat server (pid $first)"
expect "…with a hint" "hint: stop that server first (kill $first)"
no_internal "second serve"
run "…also on the same --port: the data directory's message comes first" 1 "$bin" serve --port "$port" --data "$work/data" --json
expect "…naming the pid" "(pid $first)"
check "…and leaves the transcript as it was" test "$(digest)" = "$before"
check "the first server still runs" kill -0 "$first"

kill -9 "$first"; wait "$first" 2>/dev/null; server_pid=""
start_server "$work/data"
check "after kill -9, the next server starts" kill -0 "$server_pid"
check "…and says the last run ended uncleanly" grep -q '"event":"transcript_unclean_stop"' "$work/server.log"
check "…and its start log says sealing, fsync and checkpoints" grep -q '"event":"transcript",.*"sealing":"off","fsync":"batch","checkpoint_every":1000' "$work/server.log"

stop_server
run "the transcript verifies after all that" 0 "$bin" transcript verify "$work/data/transcript" --host-key "$work/data/host_key.pub"

# --- cannot listen -----------------------------------------------------
run "--host 192.0.2.1 (not this machine's)" 1 "$bin" serve --host 192.0.2.1 --port 0 --data "$work/d2"
expect "…says no interface has it" "cannot listen on 192.0.2.1:0: no interface of this machine has that address"
expect "…with a hint" "hint: pass --host"
no_internal "--host 192.0.2.1"
check "…and leaves no data directory behind" test ! -e "$work/d2"

start_server "$work/d3"
run "a port in use" 1 "$bin" serve --port "$port" --data "$work/d4"
expect "…names the address" "cannot listen on 127.0.0.1:$port: the address is in use"
expect "…hints at another serve" "perhaps another securechat serve"
no_internal "port in use"
stop_server


# --- the data directory ------------------------------------------------
printf 'root:x:0:0\n' >"$work/passwd"
run "--data naming a file" 1 "$bin" serve --port 0 --data "$work/passwd"
expect "…says it is not a directory" "cannot use $work/passwd as the data directory: it is not a directory"
expect "…with a hint" "hint: pass --data DIR"
no_internal "--data file"
check "…and the file is untouched" test "$(cat "$work/passwd")" = "root:x:0:0"
run "--data through a file" 1 "$bin" serve --port 0 --data "$work/passwd/data"
expect "…says so" "a part of that path is not a directory"
no_internal "--data through a file"

# --- permissions (as an unprivileged user: root would be let through) ---
low=()
if [ "$(id -u)" = 0 ]; then low=(setpriv --reuid=65534 --regid=65534 --clear-groups); fi
mkdir -m 000 "$work/closed"
run "--data in a directory this user may not enter" 1 "${low[@]}" "$bin" serve --port 0 --data "$work/closed/data"
expect "…says permission denied" "cannot use $work/closed/data as the data directory: permission denied"
no_internal "--data not allowed"
# (Where the kernel lets anyone bind port 80, there is no mistake to make.)
if [ "$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null || echo 1024)" -gt 80 ]; then
  mine=$(mktemp -d); [ "$(id -u)" = 0 ] && chown 65534:65534 "$mine"
  run "a port below 1024 without privileges" 1 timeout 20 "${low[@]}" "$bin" serve --port 80 --data "$mine/data"
  expect "…says permission denied" "cannot listen on 127.0.0.1:80: permission denied"
  expect "…with a hint" "hint: ports below 1024 need privileges"
  no_internal "--port 80"
  rm -rf "$mine"
fi

finish serve.sh
