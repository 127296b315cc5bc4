#!/usr/bin/env bash
# Drives the compiled binary through accounts end to end, as two people on one
# machine would: serve on a port of its own, register and log in two users,
# reuse a ticket, see the uniform failure, a pinned host key that changes,
# and restart. Everything lives in a temporary directory; the server is
# stopped by its own PID on every exit path.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

export SECURECHAT_HOME="$work/alice-home"
start_server "$work/data"
check "first start says it created the host key" grep -q '"event":"host_key_created"' "$work/server.log"
fp=$(grep -o '"fingerprint":"SHA256:[^"]*' "$work/server.log" | head -1 | cut -d'"' -f4)
[ -n "$fp" ] && ok || bad "server log has no fingerprint"
mode_is "host key" "$work/data/host_key" 600
mode_is "data dir" "$work/data" 700
mode_is "database" "$work/data/securechat.db" 600
srv="127.0.0.1:$port"

input=$'correct horse battery staple\n'
run "unknown host without flag" 4 "$bin" register alice --server "$srv" --password-stdin
expect "unknown host names the fingerprint" "$fp"
run "register alice" 0 "$bin" register alice --server "$srv" --password-stdin --accept-new-host
expect "register says so" "registered alice"
mode_is "identity key" "$SECURECHAT_HOME/accounts/$srv/alice.key" 600
mode_is "ticket" "$SECURECHAT_HOME/accounts/$srv/alice.ticket" 600
mode_is "known_hosts" "$SECURECHAT_HOME/known_hosts" 600
mode_is "home dir" "$SECURECHAT_HOME" 700
grep -q "correct horse" -r "$SECURECHAT_HOME" "$work/data" && bad "password found at rest" || ok

# The first register wrote the defaults: the next commands need no flags.
expect "register says it wrote the defaults" "config.toml: server = \"$srv\", user = \"alice\""
mode_is "config.toml" "$SECURECHAT_HOME/config.toml" 600
input=$'hello with no flags\n'
run "chat with no flags" 0 "$bin" chat
expect "chat with no flags is acknowledged" '"type":"ack"'
# Host names are not aliases: localhost is another server here, but the error says where alice has a session.
input=""
run "chat at another name for the server" 3 "$bin" chat -s "localhost:$port"
expect "no ticket at localhost" "no valid session ticket for alice at localhost:$port"
expect "names the server with a session" "hint: alice has a session on $srv: pass --server $srv"
run "nobody logged in at localhost" 2 env SECURECHAT_HOME="$work/other-home" "$bin" chat -s "localhost:$port"
expect "nobody logged in, no sessions anywhere" "nobody is logged in to localhost:$port"

input=$'correct horse battery staple\n'
run "duplicate name" 1 env SECURECHAT_HOME="$work/mallory-home" "$bin" register alice --server "$srv" --password-stdin --accept-new-host
expect "duplicate name message" 'the name "alice" is taken'
# The name is checked before the password is read: an empty stdin is never reached.
input=""
run "duplicate name before the password" 1 env SECURECHAT_HOME="$work/mallory-home" "$bin" register alice --server "$srv" --password-stdin
expect "duplicate name before the password message" 'the name "alice" is taken'
refute "duplicate name: stdin not read" "first line of stdin is empty"
check "the server counted the name check" grep -q '"event":"check_name".*"user":"alice","available":false' "$work/server.log"
input=$'1qaz2wsx3edc4rfv\n'
run "common password" 2 env SECURECHAT_HOME="$work/bob-home" "$bin" register bob --server "$srv" --password-stdin --accept-new-host
expect "common password message" "commonly used"
input=$'a long enough passphrase for him\n'
run "register bob" 0 env SECURECHAT_HOME="$work/bob-home" "$bin" register bob --server "$srv" --password-stdin --accept-new-host
run "bad user name" 2 "$bin" register "Alice!" --server "$srv" --password-stdin

input=$'correct horse battery staple\n'
run "login alice" 0 "$bin" login alice --server "$srv" --password-stdin
expect "login says so" "logged in as alice"
input=$'wrong horse battery staple\n'
run "wrong password" 3 "$bin" login alice --server "$srv" --password-stdin
input=$'correct horse battery staple\n'
run "no identity here (unknown to this machine)" 3 env SECURECHAT_HOME="$work/bob-home" "$bin" login alice --server "$srv" --password-stdin

run "logout alice" 0 "$bin" logout alice --server "$srv"
expect "logout revoked" "ticket revoked"
run "logout again" 0 "$bin" logout alice --server "$srv"
expect "logout again says not logged in" "not logged in"

# Secrets (docs/SECURITY.md §5): no password, ticket or key in the server's
# log or a command's output; every file 0600, every directory 0700.
input=$'correct horse battery staple\n'
run "login alice for the secrets checks" 0 "$bin" login alice --server "$srv" --password-stdin
ticket=$(grep -o '"ticket":"[^"]*"' "$SECURECHAT_HOME/accounts/$srv/alice.ticket" | cut -d'"' -f4)
ticket_key=$(grep -o '"ticket_key":"[^"]*"' "$SECURECHAT_HOME/accounts/$srv/alice.ticket" | cut -d'"' -f4)
host_secret=$(cut -d' ' -f2 "$work/data/host_key")
for secret in "correct horse battery staple" "wrong horse battery staple" "a long enough passphrase for him" "1qaz2wsx3edc4rfv" "$ticket" "$ticket_key" "$host_secret"; do
  [ -n "$secret" ] || { bad "secrets: an empty needle"; continue; }
  if grep -qF -- "$secret" "$work/server.log"; then bad "secrets: the server log holds \"$secret\""; else ok; fi
  if grep -qF -- "$secret" <<<"$out"; then bad "secrets: login's output holds \"$secret\""; else ok; fi
done
grep -rqF "$ticket_key" "$work/data" && bad "secrets: the ticket key is in the data dir" || ok
loose=$(find "$work"/*-home "$work/data" \( -type f ! -perm 600 \) -o \( -type d ! -perm 700 \))
if [ -z "$loose" ]; then ok; else bad "secrets: files or directories open to others"; show <<<"$loose"; fi
run "logout alice after the secrets checks" 0 "$bin" logout alice --server "$srv"

# Where am I logged in (securechat sessions), and ending a session elsewhere at
# once: alice's key copied to a second machine ("desktop"), a chat running on
# each; the desktop lists both, revokes the laptop's, and the laptop's chat
# ends at once with the hint to log in again while the desktop's goes on.
desk="$work/alice-desktop"
mkdir -p "$desk/accounts/$srv" && chmod 700 "$desk" "$desk/accounts" "$desk/accounts/$srv"
cp -p "$SECURECHAT_HOME/accounts/$srv/alice.key" "$desk/accounts/$srv/" && cp -p "$SECURECHAT_HOME/known_hosts" "$desk/"
input=$'correct horse battery staple\n'
run "login alice on the laptop" 0 "$bin" login alice --server "$srv" --password-stdin
run "login alice on the desktop" 0 env SECURECHAT_HOME="$desk" "$bin" login alice --server "$srv" --password-stdin
chat_bg "$SECURECHAT_HOME" alice laptop
chat_bg "$desk" alice desktop
input=""
run "sessions on the desktop" 0 env SECURECHAT_HOME="$desk" NO_COLOR=1 "$bin" sessions --server "$srv"
expect "sessions marks this command" "(this command)"
expect "sessions marks the desktop's chat" "(this machine)"
[ "$(awk '/^$/ { exit } 1' <<<"$out" | grep -cE '^[0-9a-f]{12}  [0-9a-f]{12}  .*  127\.0\.0\.1')" = 3 ] && ok || { bad "sessions: want 3 live sessions from 127.0.0.1, with their device"; show <<<"$out"; }
awk '{ print length($0) }' <<<"$out" | while read -r n; do [ "$n" -le 80 ] || echo long; done | grep -q long && bad "sessions: a line wider than 80 columns" || ok
run "sessions --json on the desktop" 0 env SECURECHAT_HOME="$desk" "$bin" sessions --server "$srv" --json
laptop_id=$(jq -r '(.live[] | select(.current) | .ticket) as $here | .live[] | select(.ticket != $here) | .id' <<<"$out")
[ "$(wc -w <<<"$laptop_id")" = 1 ] && ok || { bad "sessions --json: want exactly one session off this machine"; show <<<"$out"; }
run "revoke an unknown session" 1 env SECURECHAT_HOME="$desk" "$bin" sessions revoke 000000000000 --server "$srv"
expect "unknown session is said" "no session or ticket 000000000000"
run "revoke needs an id" 2 env SECURECHAT_HOME="$desk" "$bin" sessions revoke --server "$srv"
run "revoke the laptop's session from the desktop" 0 env SECURECHAT_HOME="$desk" "$bin" sessions revoke "$laptop_id" --server "$srv"
expect "revoke says one session ended" "1 live session ended"
if wait_exit "$laptop_pid" && [ "$rc" = 1 ]; then ok; else bad "laptop chat: exit $rc after the revoke, want 1"; show "$work/laptop.err"; fi
check "laptop chat was told session_revoked" grep -q "session_revoked\|was ended by alice" "$work/laptop.out" "$work/laptop.err"
check "laptop chat says how to log in again" grep -q "securechat login alice --server $srv" "$work/laptop.err"
kill -0 "$desktop_pid" 2>/dev/null && ok || bad "the desktop's chat ended too"
check "the server logged the revocation" grep -q '"event":"session_revoked".*"user":"alice".*"ended":1' "$work/server.log"
run "the laptop's ticket is gone: its chat cannot resume" 3 "$bin" chat -u alice --server "$srv"
# logout ends the live sessions of its ticket, not only future logins: the desktop's chat ends at once.
run "logout on the desktop" 0 env SECURECHAT_HOME="$desk" "$bin" logout alice --server "$srv"
if wait_exit "$desktop_pid" && [ "$rc" = 1 ]; then ok; else bad "desktop chat: exit $rc after logout, want 1"; show "$work/desktop.err"; fi
check "desktop chat says how to log in again" grep -q "securechat login alice --server $srv" "$work/desktop.err"
for h in laptop_holder desktop_holder; do kill -TERM "${!h}" 2>/dev/null; wait "${!h}" 2>/dev/null; done

# securechat passwd: proves the old password and key like a login, re-seals
# the key here, replaces the server's verifier; --end-other-sessions ends the
# other machine's chat at once. Back to the first password at the end.
key="$SECURECHAT_HOME/accounts/$srv/alice.key"
sum_before=$(sha256sum "$key")
input=$'correct horse battery staple\nshort\n'
run "passwd refuses a weak new password" 2 "$bin" passwd alice --server "$srv" --password-stdin
expect "passwd says why" "too short"
[ "$(sha256sum "$key")" = "$sum_before" ] && [ ! -e "$key.new" ] && ok || bad "passwd: a refused change touched the key file"
input=$'wrong horse battery staple\nfresh horses graze at noon\n'
run "passwd with a wrong current password" 3 "$bin" passwd alice --server "$srv" --password-stdin
input=$'correct horse battery staple\nfresh horses graze at noon\n'
run "passwd" 0 "$bin" passwd alice --server "$srv" --password-stdin
expect "passwd says so" "password changed for alice"
[ "$(sha256sum "$key")" != "$sum_before" ] && [ ! -e "$key.new" ] && ok || bad "passwd: the key file was not re-sealed in place"
mode_is "re-sealed identity key" "$key" 600
input=$'correct horse battery staple\n'
run "the old password no longer opens the key here" 3 "$bin" login alice --server "$srv" --password-stdin
expect "the key here refuses the old password" "wrong password for this account's identity key"
run "the server refuses the old password (the desktop's key is still sealed under it)" 3 env SECURECHAT_HOME="$desk" "$bin" login alice --server "$srv" --password-stdin
expect "the server's uniform refusal" "login failed"
input=$'fresh horses graze at noon\n'
run "login with the new password" 0 "$bin" login alice --server "$srv" --password-stdin
for secret in "fresh horses graze at noon"; do
  grep -qF -- "$secret" "$work/server.log" && bad "passwd: the server log holds the new password" || ok
  grep -rqF -- "$secret" "$work/data" "$SECURECHAT_HOME" && bad "passwd: the new password is at rest" || ok
done
cp -p "$key" "$desk/accounts/$srv/alice.key"
run "login on the desktop with the new password" 0 env SECURECHAT_HOME="$desk" "$bin" login alice --server "$srv" --password-stdin
rm -f "$work/desktop.in"
chat_bg "$desk" alice desktop
input=$'fresh horses graze at noon\ncorrect horse battery staple\n'
run "passwd --end-other-sessions" 0 "$bin" passwd alice --server "$srv" --password-stdin --end-other-sessions
expect "passwd says the other session ended" "1 other session ended, other tickets revoked"
if wait_exit "$desktop_pid" && [ "$rc" = 1 ]; then ok; else bad "desktop chat: exit $rc after passwd --end-other-sessions, want 1"; show "$work/desktop.err"; fi
check "desktop chat says how to log in again" grep -q "securechat login alice --server $srv" "$work/desktop.err"
kill -TERM "$desktop_holder" 2>/dev/null; wait "$desktop_holder" 2>/dev/null
input=""
run "the desktop's ticket was revoked" 3 env SECURECHAT_HOME="$desk" "$bin" chat -u alice --server "$srv"
run "this machine's new ticket still works" 0 "$bin" sessions --server "$srv"

# Restart keeps accounts and the host key.
stop_server
start_server "$work/data" "$port"
check "a restart says it loaded the host key" grep -q '"event":"host_key_loaded"' "$work/server.log"
fp2=$(grep -o '"fingerprint":"SHA256:[^"]*' "$work/server.log" | head -1 | cut -d'"' -f4)
[ "$fp" = "$fp2" ] && ok || bad "host key changed across restart: $fp vs $fp2"
input=$'correct horse battery staple\n'
run "login after restart" 0 "$bin" login alice --server "$srv" --password-stdin
stop_server

# A different server on the same address: the pin must refuse it with exit 4.
start_server "$work/other-data" "$port"
run "changed host key" 4 "$bin" login alice --server "$srv" --password-stdin
expect "changed key names known_hosts" "known_hosts"
expect "changed key names the line" "remove line"
grep -qF "correct horse" <<<"$out" && bad "changed key: the output holds the password" || ok
# Refused before the password was sent: the impostor heard no login attempt.
grep -qE '"event":"(login|login_failed|auth_refused)"' "$work/server.log" && bad "changed key: the other server saw a login" || ok
stop_server

finish accounts.sh
