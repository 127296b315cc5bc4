#!/usr/bin/env bash
# Looks at what actually crosses the wire. Captures loopback traffic on the
# server's port only with tcpdump while the compiled binary registers two
# users, logs one of them in with its password, and chats (room messages and
# a direct message) between them; then checks that the capture holds none of
# the passwords, user names or message texts — neither in the raw pcap bytes
# nor in `tcpdump -r FILE -A` — and that the check can fail: the capture is
# not empty, is of the server's port, and does contain the cleartext
# handshake ("client_hello", "server_hello"), found by the very same greps.
#
# Needs tcpdump and root (capturing on lo). Without them: SKIP with exit 0,
# except under CI=true, where that is a failure. Every process started here is
# stopped by its own PID on every exit path; every wait is bounded.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"

if ! command -v tcpdump >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  why="tcpdump is not installed"
  command -v tcpdump >/dev/null 2>&1 && why="not running as root (needed to capture on lo)"
  if [ "${CI:-}" = true ]; then
    echo "FAIL wire.sh: $why; CI must install tcpdump and run this as root"
    echo "wire.sh: 0 passed, 1 failed"
    exit 1
  fi
  echo "SKIP wire.sh: $why"
  exit 0
fi

begin

# Distinctive secrets: none of them may appear on the wire.
PW1='Zebra-Quartz-Lantern-73'
PW2='Mango-Violet-Harbor-58'
U1=wireuserone
U2=wireusertwo
M1='PLAINTEXT-CANARY-1'
M2='PLAINTEXT-CANARY-2'
M3='PLAINTEXT-CANARY-3' # a direct message
M4='PLAINTEXT-CANARY-4' # from the other side

# as USER COMMAND...: run with USER's own client state ("machine"), bounded in time.
as() { local u=$1; shift; env SECURECHAT_HOME="$work/home-$u" NO_COLOR=1 timeout 120 "$@"; }

start_server "$work/data"
srv="127.0.0.1:$port"

# The capture: this port only, packet-buffered and in immediate mode (else the
# last packets can still sit in the kernel ring when tcpdump stops), started
# before any client.
cap="$work/wire.pcap"
tcpdump -i lo -nn -U --immediate-mode -Z root -w "$cap" "tcp port $port" >"$work/tcpdump.out" 2>"$work/tcpdump.err" &
tcpdump_pid=$!
pids+=("$tcpdump_pid")
if wait_for "$work/tcpdump.err" 'listening on'; then ok; else bad "tcpdump did not start"; show "$work/tcpdump.err"; exit 1; fi

# --- the session -------------------------------------------------------------
input="$PW1"$'\n'
run "register $U1" 0 as "$U1" "$bin" register "$U1" --server "$srv" --password-stdin --accept-new-host
expect "register $U1 says so" "registered $U1"
input="$PW2"$'\n'
run "register $U2" 0 as "$U2" "$bin" register "$U2" --server "$srv" --password-stdin --accept-new-host
expect "register $U2 says so" "registered $U2"
# A password login as well (register's own login is one too, but be explicit).
input="$PW1"$'\n'
run "login $U1" 0 as "$U1" "$bin" login "$U1" --server "$srv" --password-stdin
input=""

# U2 listens (stdin a fifo held open by a sleep of our own) and says something.
mkfifo "$work/u2.in"
sleep 300 >"$work/u2.in" &
holder=$!
pids+=("$holder")
as "$U2" "$bin" chat --user "$U2" --server "$srv" --json <"$work/u2.in" >"$work/u2.out" 2>"$work/u2.err" &
u2_pid=$!
pids+=("$u2_pid")
if wait_for "$work/u2.out" '^\{"type":"room"'; then ok; else bad "$U2: no room event"; show "$work/u2.out" "$work/u2.err"; fi

printf '%s\n%s\n/msg %s %s\n' "$M1" "$M2" "$U2" "$M3" \
  | as "$U1" "$bin" chat --user "$U1" --server "$srv" --json >"$work/u1.out" 2>"$work/u1.err"
rc=$?
if [ "$rc" = 0 ]; then ok; else bad "$U1 chat: exit $rc, want 0"; show "$work/u1.out" "$work/u1.err"; fi
check "$U1: both room messages acknowledged" [ "$(grep -c '^{"type":"ack"' "$work/u1.out")" -ge 2 ]
# The messages really went through the server (so they did cross the wire, encrypted).
if wait_for "$work/u2.out" "\"type\":\"message\".*\"text\":\"$M2\""; then ok; else bad "$U2 did not receive $M2"; show "$work/u2.out"; fi
if wait_for "$work/u2.out" "\"type\":\"direct\".*\"text\":\"$M3\""; then ok; else bad "$U2 did not receive the direct message"; show "$work/u2.out"; fi
check "$U2 received $M1" grep -qF "\"text\":\"$M1\"" "$work/u2.out"

printf '%s\n' "$M4" | as "$U2" "$bin" chat --user "$U2" --server "$srv" --json >"$work/u2b.out" 2>"$work/u2b.err"
rc=$?
if [ "$rc" = 0 ]; then ok; else bad "$U2 chat: exit $rc, want 0"; show "$work/u2b.out" "$work/u2b.err"; fi
check "$U2 saw its own line relayed back in the listener" wait_for "$work/u2.out" "\"text\":\"$M4\""

kill -TERM "$holder"; wait "$holder" 2>/dev/null
if wait_exit "$u2_pid" && [ "$rc" = 0 ]; then ok; else bad "$U2 listener: exit $rc after its stdin closed, want 0"; show "$work/u2.err"; fi
stop_server

# Stop the capture by its own PID; SIGINT makes tcpdump flush and report.
sleep 0.3
kill -INT "$tcpdump_pid"
if wait_exit "$tcpdump_pid" 50; then ok; else bad "tcpdump did not stop"; kill -KILL "$tcpdump_pid" 2>/dev/null; fi

# --- the capture -------------------------------------------------------------
check "the capture file is not empty" test -s "$cap"
tcpdump -nn -r "$cap" >"$work/wire.txt" 2>"$work/read.err" || bad "tcpdump -r failed: $(cat "$work/read.err")"
tcpdump -nn -r "$cap" -A >"$work/wire.ascii" 2>>"$work/read.err" || bad "tcpdump -r -A failed"
npk=$(grep -c "\.$port[ :]" "$work/wire.txt")
check "the capture has packets of port $port (${npk:-0})" [ "${npk:-0}" -gt 20 ]
# Every connection of the session is in it, from its SYN: 2 registers (each a
# name check, then the register), 1 login, 3 chats.
nsyn=$(grep -cE "> 127\.0\.0\.1\.$port: Flags \[S\]" "$work/wire.txt")
check "the capture has all 8 connections to port $port (${nsyn:-0} SYNs)" [ "${nsyn:-0}" = 8 ]
# Packets with a payload (length > 0): the data of the session, not only SYN/ACK/FIN.
ndata=$(grep -cE 'length [1-9][0-9]*$' "$work/wire.txt")
check "the capture has packets with data (${ndata:-0})" [ "${ndata:-0}" -ge 24 ]
# A capture that lost packets proves nothing about what it lacks.
if grep -q '^0 packets dropped by kernel' "$work/tcpdump.err"; then ok; else bad "tcpdump dropped packets"; show "$work/tcpdump.err"; fi

# absent NEEDLE: in neither the raw pcap bytes nor tcpdump's ASCII rendering.
absent() {
  local raw asc
  raw=$(grep -caF -- "$1" "$cap"); asc=$(grep -caF -- "$1" "$work/wire.ascii")
  if [ "$raw" = 0 ] && [ "$asc" = 0 ]; then ok; else bad "\"$1\" is on the wire in cleartext (pcap lines: $raw, -A lines: $asc)"; fi
}
# present NEEDLE: the same greps find what is sent in the clear (the check can fail).
present() {
  local raw asc
  raw=$(grep -caF -- "$1" "$cap"); asc=$(grep -caF -- "$1" "$work/wire.ascii")
  if [ "$raw" -gt 0 ] && [ "$asc" -gt 0 ]; then ok; else bad "control: \"$1\" should be on the wire in cleartext (pcap lines: $raw, -A lines: $asc)"; fi
}

present '"type":"client_hello"'
present '"type":"server_hello"'
# The server's host key is public and sent in server_hello: the base64 in host_key.pub is on the wire.
hk=$(grep -o '[A-Za-z0-9+/]\{43\}=' "$work/data/host_key.pub" | head -1)
if [ -n "$hk" ]; then present "$hk"; else bad "no base64 key in host_key.pub"; show "$work/data/host_key.pub"; fi

for needle in "$PW1" "$PW2" "$U1" "$U2" "$M1" "$M2" "$M3" "$M4" "PLAINTEXT-CANARY" "Zebra-Quartz" "wireuser"; do
  absent "$needle"
done

finish wire.sh
