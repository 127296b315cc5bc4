#!/usr/bin/env bash
# Drives the binary against a real full disk: the server's transcript lives
# on a 1 MiB tmpfs that a filler file fills up. While the disk is full,
# nothing that must be recorded is relayed (a listener in the room sees none
# of it), the sender is refused, the operator's log says so; once the filler
# is removed the server records the outage, relays again, and the
# transcript verifies. Needs to mount a tmpfs: as root, or in a user and
# mount namespace of its own (unshare), which it enters by itself.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
# Not root, or root without the right to mount (a container): a user and
# mount namespace of its own gives both.
if [ -z "${FULLDISK_UNSHARED:-}" ]; then
  probe=$(mktemp -d)
  if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=64k tmpfs "$probe" 2>/dev/null; then
    rmdir "$probe"
    exec env FULLDISK_UNSHARED=1 unshare --user --map-root-user --mount bash "$0" "$bin"
  fi
  umount "$probe"; rmdir "$probe"
fi
. "$(dirname "$0")/lib.sh"
begin
mounted=""
cleanup_extra() { if [ -n "$mounted" ]; then umount "$mounted" 2>/dev/null; fi; }

PW='correct horse battery staple'
as() { local u=$1; shift; env SECURECHAT_HOME="$work/home-$u" NO_COLOR=1 timeout 120 "$@"; }
register() { printf '%s\n' "$PW" | as "$1" "$bin" register "$1" --server "127.0.0.1:$port" --password-stdin --accept-new-host >/dev/null 2>&1 || bad "register $1"; }

data="$work/data"
mkdir -p "$data/transcript"
chmod 700 "$data" "$data/transcript"
if ! mount -t tmpfs -o size=1m,mode=0700 tmpfs "$data/transcript"; then
  bad "cannot mount a 1 MiB tmpfs for the transcript (run as root, or where unshare may make a user namespace)"
  finish fulldisk.sh
fi
mounted="$data/transcript"

start_server "$data"
register erin
register frank
# frank listens in general for the whole test (his stdin stays open).
mkfifo "$work/frank.in"
as frank "$bin" chat --user frank --server "127.0.0.1:$port" --room general <"$work/frank.in" >"$work/frank.out" 2>"$work/frank.err" &
frank=$!
pids+=("$frank")
exec 3>"$work/frank.in"
wait_for "$work/frank.out" '"type":"history_end"' || bad "frank did not join general"

printf 'before the disk filled\n' | as erin "$bin" chat --user erin --server "127.0.0.1:$port" --room general >"$work/erin1.out" 2>&1
check "erin's first line is acknowledged" grep -q '"type":"ack"' "$work/erin1.out"
wait_for "$work/frank.out" 'before the disk filled' || bad "frank did not get erin's first line"

# Fill the disk. The transcript file's last page may still take a few KiB,
# so erin keeps talking until the disk refuses. Messages accepted in the turn
# whose write fails were already relayed (the documented window) and are
# written once space returns; after that her lines are refused, and her
# client sees the answers once the one in flight is acknowledged.
dd if=/dev/zero of="$data/transcript/filler" bs=4k 2>/dev/null
seq 1 60 | sed 's/^/outage line /; s/$/ : 100,000 EUR to mallory, padded to fill a page of the disk quickly ......................................./' |
  as erin "$bin" chat --user erin --server "127.0.0.1:$port" --room general >"$work/erin2.out" 2>&1 &
erin=$!
pids+=("$erin")
check "the operator is told the transcript is blocked" wait_for "$work/server.log" '"event":"transcript_blocked"'
check "the operator is told nothing is recorded" wait_for "$work/server.log" '"event":"not_recording"'
check "frank is told the server is not recording" wait_for "$work/frank.out" '"code":"not_recorded"'
sleep 2 # erin's remaining lines arrive and are refused

# Space returns.
rm -f "$data/transcript/filler"
check "the server records again" wait_for "$work/server.log" '"event":"transcript_recovered"'
check "frank is told it records again" wait_for "$work/frank.out" '"code":"recorded","text":"the server'"'"'s transcript is writing again'
wait_exit "$erin" 300 || bad "erin's chat did not end after the outage"
check "erin's chat during the outage exits non-zero (exit $rc)" test "$rc" != 0
refused=$(grep '"type":"nack"' "$work/erin2.out" | grep '"code":"not_recorded"' | grep -o '"id":[0-9]*' | grep -o '[0-9]*')
acked=$(grep '"type":"ack"' "$work/erin2.out" | grep -o '"id":[0-9]*' | grep -o '[0-9]*')
check "some of erin's lines were refused not_recorded" test -n "$refused"
relayed_refused=0
for n in $refused; do grep -q "\"outage line $n :" "$work/frank.out" && relayed_refused=$((relayed_refused+1)); done
check "no refused line reached frank ($relayed_refused did)" test "$relayed_refused" = 0
missing_acked=0
for n in $acked; do grep -q "\"outage line $n :" "$work/frank.out" || missing_acked=$((missing_acked+1)); done
check "every acknowledged line reached frank ($missing_acked did not)" test "$missing_acked" = 0
printf 'after the outage\n' | as erin "$bin" chat --user erin --server "127.0.0.1:$port" --room general >"$work/erin3.out" 2>&1
check "erin's line after the outage is acknowledged" grep -q '"type":"ack"' "$work/erin3.out"
check "frank gets it" wait_for "$work/frank.out" 'after the outage'
exec 3>&-
wait_exit "$frank" || bad "frank's chat did not end at EOF"
stop_server

run "the transcript verifies after the outage" 0 "$bin" transcript verify "$data/transcript" --host-key "$data/host_key.pub"
expect "verify says PASS" "PASS"
check "the outage is a recovery entry" test "$(grep '"type":"recovery"' "$data/transcript/"*.jsonl | grep -c 'the disk refused writes')" = 1
in_record=0
for n in $refused; do grep -q "\"outage line $n :" "$data/transcript/"*.jsonl && in_record=$((in_record+1)); done
check "no refused line is in the transcript ($in_record are)" test "$in_record" = 0
missing=0
for n in $acked; do grep -q "\"outage line $n :" "$data/transcript/"*.jsonl || missing=$((missing+1)); done
check "every acknowledged line is in the transcript ($missing are not)" test "$missing" = 0

finish fulldisk.sh
