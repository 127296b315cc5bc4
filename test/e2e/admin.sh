#!/usr/bin/env bash
# Drives the compiled binary through server administration, as a team would:
# the operator registers root, restarts the server with --admin root; bob
# chats; root locks bob and bob's live chat ends at once, exit 3, saying why;
# bob cannot log in; alice, no administrator, is refused; root unlocks bob
# and he logs in again; end-sessions ends his chat without locking him; the
# transcript shows every action with who did it, and verifies.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

# Each user on a machine of their own.
home() { mkdir -p "$work/$1" && chmod 700 "$work/$1" && echo "$work/$1"; }
root_home=$(home root-home); alice_home=$(home alice-home); bob_home=$(home bob-home)
pw_root="the operator keeps this one safe"
pw_alice="correct horse battery staple"
pw_bob="a long enough passphrase for him"

# An administrator must have an account: a name nobody holds is refused.
run "serve --admin with no such account" 2 "$bin" serve --port 0 --data "$work/data" --admin root
expect "says the account is missing" "--admin root: no such account on this server"
expect "says how to make it" 'securechat register NAME", then restart it with --admin NAME'
run "serve --admin with a bad name" 2 "$bin" serve --port 0 --data "$work/data" --admin 'Root!'
expect "says the name is bad" '--admin "Root!" is not a user name'

start_server "$work/data"
srv="127.0.0.1:$port"
input="$pw_root"$'\n'
run "register root" 0 env SECURECHAT_HOME="$root_home" "$bin" register root --server "$srv" --password-stdin --accept-new-host
input="$pw_alice"$'\n'
run "register alice" 0 env SECURECHAT_HOME="$alice_home" "$bin" register alice --server "$srv" --password-stdin --accept-new-host
input="$pw_bob"$'\n'
run "register bob" 0 env SECURECHAT_HOME="$bob_home" "$bin" register bob --server "$srv" --password-stdin --accept-new-host
stop_server
start_server "$work/data" "$port" --admin root
check "the start log names the administrators" grep -q '"event":"admins","users":"root","count":1' "$work/server.log"

chat_bg "$bob_home" bob chat1
echo "hello from bob" >"$work/chat1.in"
if wait_for "$work/chat1.out" '^\{"type":"ack"'; then ok; else bad "bob's line was not acknowledged"; show "$work/chat1.out" "$work/chat1.err"; fi

# alice is no administrator: refused, alike for an account that exists and one that does not.
input=""
run "alice cannot lock bob" 1 env SECURECHAT_HOME="$alice_home" "$bin" admin lock bob --server "$srv"
expect "alice is told why" "only a server administrator (serve --admin) may lock an account"
not_admin_bob=$out
run "alice cannot lock a name nobody has" 1 env SECURECHAT_HOME="$alice_home" "$bin" admin lock nobody --server "$srv"
[ "$out" = "$not_admin_bob" ] && ok || { bad "not_admin says something about the target"; show <<<"$out"; }
run "an unknown action" 2 env SECURECHAT_HOME="$root_home" "$bin" admin ban bob --server "$srv"
expect "names the actions" "use lock, unlock or end-sessions"

# root locks bob: his live chat ends at once, exit 3, saying who did it and what to do.
run "root locks bob" 0 env SECURECHAT_HOME="$root_home" "$bin" admin lock bob --server "$srv" --json
[ "$(jq -c . <<<"$(head -1 <<<"$out")")" = '{"type":"admin_done","action":"lock","user":"bob","ended":1}' ] && ok || { bad "admin lock --json"; show <<<"$out"; }
expect "admin lock says so" "locked bob: 1 live session ended"
if wait_exit "$chat1_pid" && [ "$rc" = 3 ]; then ok; else bad "bob's chat: exit $rc after the lock, want 3"; show "$work/chat1.err"; fi
check "bob's chat got account_locked" grep -q '"code":"account_locked"' "$work/chat1.out"
check "bob's chat says who locked it" grep -q "locked by server administrator root" "$work/chat1.err"
check "bob's chat says what to do" grep -q 'securechat admin unlock bob' "$work/chat1.err"
kill -TERM "$chat1_holder" 2>/dev/null
run "root cannot lock bob twice" 1 env SECURECHAT_HOME="$root_home" "$bin" admin lock bob --server "$srv"
expect "already locked" "bob is locked already"
run "root cannot lock itself" 1 env SECURECHAT_HOME="$root_home" "$bin" admin lock root --server "$srv"
expect "own account" "not on your own account"

# bob cannot log in: his ticket is gone, his right password is told the account is locked (exit 3), a wrong one only fails.
input=""
run "bob's chat cannot resume" 3 env SECURECHAT_HOME="$bob_home" "$bin" chat -u bob --server "$srv" --json
input="$pw_bob"$'\n'
run "bob's password login" 3 env SECURECHAT_HOME="$bob_home" "$bin" login bob --server "$srv" --password-stdin
expect "bob is told the account is locked" "the account bob is locked by a server administrator"
input="$pw_alice"$'\n'
run "someone with the wrong password learns nothing" 3 env SECURECHAT_HOME="$alice_home" "$bin" login bob --server "$srv" --password-stdin
refute "no word of the lock" "locked"

# root unlocks bob: he logs in and chats again.
input=""
run "root unlocks bob" 0 env SECURECHAT_HOME="$root_home" "$bin" admin unlock bob --server "$srv"
expect "admin unlock says so" "unlocked bob"
input="$pw_bob"$'\n'
run "bob logs in again" 0 env SECURECHAT_HOME="$bob_home" "$bin" login bob --server "$srv" --password-stdin
chat_bg "$bob_home" bob chat2

# end-sessions: his chat ends (session_revoked, exit 1, log in again); he is not locked.
input=""
run "root ends bob's sessions" 0 env SECURECHAT_HOME="$root_home" "$bin" admin end-sessions bob --server "$srv"
expect "end-sessions says so" "ended the sessions of bob: 1 live session ended"
if wait_exit "$chat2_pid" && [ "$rc" = 1 ]; then ok; else bad "bob's chat: exit $rc after end-sessions, want 1"; show "$work/chat2.err"; fi
check "bob's chat says who ended it" grep -q "ended by server administrator root" "$work/chat2.err"
check "bob's chat says to log in again" grep -q "securechat login bob --server $srv" "$work/chat2.err"
kill -TERM "$chat2_holder" 2>/dev/null
input="$pw_bob"$'\n'
run "bob logs in after end-sessions" 0 env SECURECHAT_HOME="$bob_home" "$bin" login bob --server "$srv" --password-stdin

check "the server logged the lock" grep -q '"event":"admin_action","user":"root","source":"127.0.0.1","action":"lock","target":"bob","ended":1' "$work/server.log"
stop_server

# The transcript: every action, who did it and from which session, before the sessions it ended closed.
input=""
run "transcript verify" 0 transcript_verify "$work/data" --host-key "$work/data/host_key.pub"
out=$(transcript_export "$work/data" 2>/dev/null)
actions=$(jq -c 'select(.type=="admin_action") | [.user, .action, .target]' <<<"$out" | tr -d '\n')
[ "$actions" = '["root","lock","bob"]["root","unlock","bob"]["root","end_sessions","bob"]' ] && ok || { bad "transcript: admin actions are $actions"; }
root_sessions=$(jq -r 'select(.type=="session_open" and .user=="root") | .session' <<<"$out")
lock_session=$(jq -r 'select(.type=="admin_action" and .action=="lock") | .session' <<<"$out")
grep -qxF -- "$lock_session" <<<"$root_sessions" && ok || bad "transcript: the lock's session is not one of root's"
# The lock comes before the close of the session it ended (bob's first chat).
chat1_session=$(jq -r 'select(.type=="connected") | .session' "$work/chat1.out" | head -1)
order=$(jq -r --arg s "$chat1_session" 'select((.type=="admin_action" and .action=="lock") or (.type=="session_close" and .session==$s)) | .type' <<<"$out" | tr '\n' ' ')
[ "$order" = "admin_action session_close " ] && ok || bad "transcript: the lock, then the close of bob's chat; got: $order"
# What happened to bob: export --user bob keeps the administrators' actions on him.
out=$(transcript_export "$work/data" --user bob 2>/dev/null)
[ "$(jq -r 'select(.type=="admin_action") | .action' <<<"$out" | tr '\n' ' ')" = "lock unlock end_sessions " ] && ok || bad "transcript export --user bob lacks the actions on bob"

finish admin.sh
