#!/usr/bin/env bash
# Drives the compiled binary through devices (PROTOCOL.md §7.11), as one
# person with three machines (one SECURECHAT_HOME each): alice registers on
# A; `device add` on B prints a code and waits; a wrong code is refused on
# A, the right one approved; B ends logged in and chats with A; `device list`
# on both marks each its own device. Then B's laptop is stolen while its
# `chat --json` runs: A revokes it and B's chat ends at once with
# device_revoked; B's key and ticket log in no more. A key backup of A's key
# round-trips to machine C (a wrong passphrase refused, an existing key not
# replaced without --force). Finally `transcript export | jq` shows the
# enrollment and the revocation with who did them, and `transcript verify`
# passes. Every process started here is stopped by its own PID; every wait
# is bounded.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

PW="correct horse battery staple"
BACKUP_PW="a different backup passphrase"
# on MACHINE command...: runs with that machine's client state, for at most 60 s.
on() { local m=$1; shift; env SECURECHAT_HOME="$work/home-$m" NO_COLOR=1 timeout 60 "$@"; }
# jqok ARGS...: jq -e, quietly: true when the filter's last output is true.
jqok() { jq -e "$@" >/dev/null; }

start_server "$work/data"
srv="127.0.0.1:$port"

input="$PW"$'\n'
run "register alice on A" 0 on A "$bin" register alice --server "$srv" --password-stdin --accept-new-host
a_id=$(on A "$bin" device list --json | jq -r '.devices[] | select(.current) | .id')
check "A's device has an id" test -n "$a_id"

# --- enrollment: device add on B, approve on A ------------------------------
printf '%s\n' "$PW" | on B "$bin" device add -u alice --name "laptop b" --server "$srv" --password-stdin --accept-new-host >"$work/add.out" 2>"$work/add.err" &
add_pid=$!
pids+=("$add_pid")
if wait_for "$work/add.out" '^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$'; then ok; else bad "device add printed no code"; show "$work/add.out" "$work/add.err"; fi
code=$(head -1 "$work/add.out")
check "device add tells what to run on the other machine" grep -qF "securechat device approve $code" "$work/add.err"

input="$PW"$'\n'
run "a wrong code is refused" 1 on A "$bin" device approve 0000-0000-0000 --password-stdin --yes
expect "the refusal says no enrollment has that code" "no enrollment waiting for alice at $srv has the code 0000-0000-0000"
run "approve without --yes and without a terminal is a usage error" 2 on A "$bin" device approve "$code" --password-stdin
run "approve the right code on A" 0 on A "$bin" device approve "$code" --password-stdin --yes
expect "approve shows the device's name" '"laptop b" asks to join alice'
expect "approve shows the code it checked" "code $code"
if wait_exit "$add_pid" && [ "$rc" = 0 ]; then ok; else bad "device add: exit $rc after approval, want 0"; show "$work/add.err"; fi
b_id=$(grep -o 'now device [0-9a-f]\{12\}' "$work/add.err" | grep -o '[0-9a-f]\{12\}')
check "device add says which device B is" test -n "$b_id"
mode_is "B's key file" "$work/home-B/accounts/$srv/alice.key" 600

run "device list on A" 0 on A "$bin" device list
expect "A lists B by name" "laptop b"
check "A marks its own device" grep -q "^$a_id .*(this device)" <<<"$out"
out=$(on B "$bin" device list --json)
check "B's list marks B as this device, enrolled by A" jqok --arg b "$b_id" --arg a "$a_id" '.devices[] | select(.current) | .id == $b and .by == $a' <<<"$out"

# --- B chats ---------------------------------------------------------------
mkfifo "$work/b.in"
sleep 300 >"$work/b.in" &
holder=$!
pids+=("$holder")
on B "$bin" chat --json <"$work/b.in" >"$work/b.out" 2>"$work/b.err" &
chat_pid=$!
pids+=("$chat_pid")
if wait_for "$work/b.out" '^\{"type":"room"'; then ok; else bad "B's chat did not join"; show "$work/b.out" "$work/b.err"; fi
input="hello from A"$'\n'
run "A says something" 0 on A "$bin" chat
if wait_for "$work/b.out" '"text":"hello from A"'; then ok; else bad "B did not receive A's line"; show "$work/b.out"; fi

# --- the laptop is stolen: revoke B from A ---------------------------------
input="$PW"$'\n'
run "A revokes B (with the password: a ticket alone may not)" 0 on A "$bin" device revoke "$b_id" --password-stdin
expect "revoke says B's live session ended" "1 live session ended"
if wait_exit "$chat_pid" 30 && [ "$rc" = 1 ]; then ok; else bad "B's chat: exit $rc within 3 s of the revocation, want 1"; show "$work/b.out" "$work/b.err"; fi
check "B's chat was told device_revoked" grep -q '"code":"device_revoked"' "$work/b.out"
check "B's chat says who revoked it" grep -q "was revoked by alice" "$work/b.err"
kill "$holder" 2>/dev/null
input="$PW"$'\n'
run "B cannot log in with the password" 3 on B "$bin" login --password-stdin
input=""
run "B's ticket is gone too" 3 on B "$bin" device list
expect "and B is told to log in" "no valid session ticket for alice"
out=$(on A "$bin" device list --json)
check "A's list shows B revoked" jqok --arg b "$b_id" '.devices[] | select(.id == $b) | .revoked > 0' <<<"$out"
input="$PW"$'\n'
run "A cannot revoke its own device" 1 on A "$bin" device revoke "$a_id" --password-stdin
expect "and is told why" "revoke it from another of your devices"

# --- key backup: A's key to machine C --------------------------------------
input="$PW"$'\n'"$BACKUP_PW"$'\n'
run "export A's key" 0 on A "$bin" key export "$work/a.sckey" --password-stdin
mode_is "the backup" "$work/a.sckey" 600
check "the backup names its format" grep -qx "securechat key backup v1" "$work/a.sckey"
run "export never replaces a file" 1 on A "$bin" key export "$work/a.sckey" --password-stdin
input="wrong backup passphrase"$'\n'"$PW"$'\n'
run "import with a wrong passphrase is refused" 1 on C "$bin" key import "$work/a.sckey" --password-stdin
expect "and says so" "wrong passphrase"
check "nothing was written on C" test ! -e "$work/home-C/accounts/$srv/alice.key"
input="$BACKUP_PW"$'\n'"$PW"$'\n'
run "import on C" 0 on C "$bin" key import "$work/a.sckey" --password-stdin
expect "import says which device C now is" "restored device $a_id of alice"
mode_is "C's key file" "$work/home-C/accounts/$srv/alice.key" 600
input="$PW"$'\n'
run "C logs in as A's device" 0 on C "$bin" login alice --server "$srv" --password-stdin --accept-new-host
input="$BACKUP_PW"$'\n'"$PW"$'\n'
run "import does not replace a key without --force" 1 on A "$bin" key import "$work/a.sckey" --password-stdin
expect "and says how" "--force"

# --- the transcript --------------------------------------------------------
stop_server
"$bin" transcript export --data "$work/data" >"$work/export.jsonl" 2>"$work/export.err"
check "the enrollment is recorded with who approved it" jqok -s --arg a "$a_id" --arg b "$b_id" \
  'any(.[]; .type == "device_enrolled" and .user == "alice" and .device == $b and .by == $a and .name == "laptop b" and (.session | length) > 0 and (.sig | length) > 0)' "$work/export.jsonl"
check "the revocation is recorded with who did it" jqok -s --arg b "$b_id" \
  'any(.[]; .type == "device_revoked" and .user == "alice" and .device == $b and (.session | length) > 0)' "$work/export.jsonl"
run "the transcript verifies" 0 "$bin" transcript verify "$work/data/transcript" --host-key "$work/data/host_key.pub"

finish devices.sh
