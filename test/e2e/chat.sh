#!/usr/bin/env bash
# Drives the compiled binary through a scripted chat, as three people on three
# machines would: serve on a port of its own, register alice, carol and dave
# (one SECURECHAT_HOME each), start carol and dave as --json listeners whose
# stdin stays open but idle (a fifo held open by a `sleep` of our own), then
# pipe 50 numbered lines from alice. Checks acks, order and sequence numbers
# on every side, a direct message, /who, the --transcript file, `left` when a
# listener goes, plain (non-JSON) output on a terminal, and the exit codes of
# wrong use. Everything lives in a temporary directory; every process started
# here is stopped by its own PID on every exit path; every wait is bounded.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

# A JSON field of one event line (the events are flat except for lists):
# jstr LINE NAME → string value; jnum LINE NAME → number value.
jstr() { [[ $1 =~ \"$2\":\"([^\"]*)\" ]] && printf '%s' "${BASH_REMATCH[1]}"; }
jnum() { [[ $1 =~ \"$2\":([0-9]+) ]] && printf '%s' "${BASH_REMATCH[1]}"; }

# as USER command...: runs with USER's own client state directory ("machine"),
# and never for more than 120 s (timeout passes SIGTERM on and keeps the status).
as() { local u=$1; shift; env SECURECHAT_HOME="$work/home-$u" NO_COLOR=1 timeout 120 "$@"; }

# listen USER: `chat --json` in the background, stdin a fifo held open by a
# sleep (so it stays idle until we kill that sleep); sets ${USER}_pid and
# ${USER}_holder. The sleep is longer than any run of this script, and killed
# by PID in any case.
listen() {
  local u=$1 pid holder
  mkfifo "$work/$u.in"
  sleep 300 >"$work/$u.in" &
  holder=$!
  as "$u" "$bin" chat --server "$srv" --json <"$work/$u.in" >"$work/$u.out" 2>"$work/$u.err" &
  pid=$!
  pids+=("$holder" "$pid")
  printf -v "${u}_pid" '%s' "$pid"
  printf -v "${u}_holder" '%s' "$holder"
  if wait_for "$work/$u.out" '^\{"type":"room"'; then ok; else bad "$u: no room event"; show "$work/$u.out" "$work/$u.err"; fi
}
# leave USER: closes USER's stdin (kills the holder); the listener must leave with exit 0.
leave() {
  local u=$1 holder pid
  holder=${u}_holder; pid=${u}_pid
  kill -TERM "${!holder}"; wait "${!holder}" 2>/dev/null
  if wait_exit "${!pid}" && [ "$rc" = 0 ]; then ok; else bad "$u: exit $rc after its stdin closed, want 0"; show "$work/$u.err"; fi
}

start_server "$work/data"
srv="127.0.0.1:$port"

# Wrong use first, while nobody has logged in anywhere.
input=""
run "chat with nobody logged in" 2 as nobody "$bin" chat --server "$srv"
expect "nobody logged in says so" "nobody is logged in to $srv"
expect "nobody logged in says how to start" "\"securechat register NAME --server $srv\" makes an account"

# Register each once: that also logs in and stores a ticket.
declare -A pw=([alice]="correct horse battery staple" [carol]="purple elephants dance at noon" [dave]="seven quiet rivers under snow")
for u in alice carol dave; do
  input="${pw[$u]}"$'\n'
  run "register $u" 0 as "$u" "$bin" register "$u" --server "$srv" --password-stdin --accept-new-host
  expect "register $u says so" "registered $u"
done

listen carol
listen dave

# alice: 50 numbered lines from a pipe, with a transcript.
start=$(date +%s%N)
printf 'line %02d\n' $(seq 1 50) | as alice "$bin" chat --server "$srv" --transcript "$work/alice.transcript" >"$work/alice.out" 2>"$work/alice.err"
rc=$?
if [ "$rc" = 0 ]; then ok; else bad "sender: exit $rc, want 0"; show "$work/alice.err"; fi
check "sender: 50 sent" [ "$(grep -c '^{"type":"sent"' "$work/alice.out")" = 50 ]
check "sender: 50 acks" [ "$(grep -c '^{"type":"ack"' "$work/alice.out")" = 50 ]
check "sender: no nack" [ "$(grep -c '^{"type":"nack"' "$work/alice.out")" = 0 ]
check "sender: stderr is quiet" [ ! -s "$work/alice.err" ] || show "$work/alice.err"
grep -q '^{"type":"connected",.*"user":"alice"' "$work/alice.out" && ok || bad "sender: no connected event"
[ "$(grep -c '^{"type":"ack"' "$work/alice.out")" = 50 ] || show "$work/alice.out" "$work/alice.err"

# seqs FILE KIND: checks the 50 lines of KIND ("message" events from alice in a
# listener's output, or "ack" lines of the transcript) are line 01..50, in
# order, with strictly increasing seq.
seqs() {
  local name=$1 file=$2 kind=$3 i=0 last=0 line seq text from problem=""
  while IFS= read -r line; do
    i=$((i+1))
    seq=$(jnum "$line" seq); text=$(jstr "$line" text)
    if [ "$kind" = message ]; then
      from=$(jstr "$line" from)
      [ "$from" = alice ] || problem="line $i is from \"$from\""
      [[ $line == *'"history":true'* ]] && problem="line $i is marked history"
    fi
    [ "$text" = "$(printf 'line %02d' "$i")" ] || problem="line $i has text \"$text\""
    [ -n "$seq" ] && [ "$seq" -gt "$last" ] || problem="line $i has seq \"$seq\" after $last"
    [ -n "$problem" ] && break
    last=$seq
  done < <(grep -E "^\{\"(type|kind)\":\"$kind\"" "$file")
  [ -z "$problem" ] && [ "$i" = 50 ] || problem=${problem:-"$i lines, want 50"}
  if [ -z "$problem" ]; then ok; else bad "$name: $problem"; show "$file"; fi
}

for u in carol dave; do
  wait_for "$work/$u.out" '^\{"type":"message".*"text":"line 50"' || bad "$u: line 50 never arrived"
  seqs "$u received the 50 lines" "$work/$u.out" message
  grep -q '^{"type":"joined","room":"general","user":"alice"' "$work/$u.out" && ok || bad "$u: no joined event for alice"
  wait_for "$work/$u.out" '^\{"type":"left","room":"general","user":"alice"' && ok || bad "$u: no left event for alice"
done
check "carol saw dave join" grep -q '^{"type":"joined","room":"general","user":"dave"' "$work/carol.out"
echo "  (50 lines to two listeners in $(( ($(date +%s%N) - start) / 1000000 )) ms)"

# The sender's transcript: 50 sent, then 50 acks with seqs, in order.
check "transcript: 50 sent lines" [ "$(grep -c '^{"kind":"sent"' "$work/alice.transcript" 2>/dev/null)" = 50 ]
seqs "transcript acks" "$work/alice.transcript" ack
mode_is "transcript is private (0600)" "$work/alice.transcript" 600
# The acks in the transcript are the same as on stdout.
diff <(grep '^{"type":"ack"' "$work/alice.out" | grep -o '"seq":[0-9]*') <(grep '^{"kind":"ack"' "$work/alice.transcript" | grep -o '"seq":[0-9]*') >/dev/null && ok || bad "transcript seqs differ from the acks on stdout"

# A direct message reaches carol and nobody else; /who lists the members.
# The room line after the DM is a barrier: once dave has it, a misrouted DM
# (sent before it, on the same connection) would have reached him too.
printf '/who\n/msg carol psst, only for carol\nafter the dm\n' | as alice "$bin" chat --server "$srv" >"$work/alice2.out" 2>"$work/alice2.err"
rc=$?
if [ "$rc" = 0 ]; then ok; else bad "dm sender: exit $rc, want 0"; show "$work/alice2.out" "$work/alice2.err"; fi
check "dm sender: 2 acks" [ "$(grep -c '^{"type":"ack"' "$work/alice2.out")" = 2 ]
members=$(grep -m1 '^{"type":"members"' "$work/alice2.out")
[[ $members == *'"room":"general"'* && $members == *'"alice"'* && $members == *'"carol"'* && $members == *'"dave"'* ]] && ok || { bad "/who: members lack alice, carol or dave: ${members:-none}"; show "$work/alice2.out"; }
grep -q '^{"type":"sent","id":[0-9]*,"to":"carol","text":"psst, only for carol"}' "$work/alice2.out" && ok || bad "dm sender: no sent event to carol"
if wait_for "$work/carol.out" '^\{"type":"direct".*"from":"alice","to":"carol","text":"psst, only for carol"'; then ok; else bad "carol did not get the dm"; show "$work/carol.out"; fi
wait_for "$work/dave.out" '"text":"after the dm"' && ok || bad "dave did not get the line after the dm"
wait_for "$work/carol.out" '"text":"after the dm"' && ok || bad "carol did not get the line after the dm"
check "dave did not get the dm" [ "$(grep -c -e '"type":"direct"' -e 'psst' "$work/dave.out")" = 0 ]
check "the dm is not in the room" [ "$(grep -c '^{"type":"message".*psst' "$work/carol.out")" = 0 ]

# /away: dave (piped, --json) marks himself away; alice's /who shows it and
# the ack of her DM to him carries it, with a line saying so.
printf '/away at lunch\n' >"$work/dave.in"
if wait_for "$work/dave.out" '^\{"type":"notice","code":"away","text":"you are marked away: at lunch"\}'; then ok; else bad "dave: no away notice"; show "$work/dave.out"; fi
printf '/who\n/msg dave lunch where?\n' | as alice "$bin" chat --server "$srv" >"$work/alice3.out" 2>"$work/alice3.err"
rc=$?
if [ "$rc" = 0 ]; then ok; else bad "away: alice exit $rc, want 0"; show "$work/alice3.out" "$work/alice3.err"; fi
check "away: /who lists dave away" grep -q '^{"type":"members","room":"general","users":\[[^]]*\],"away":\[{"user":"dave","text":"at lunch"}\]}$' "$work/alice3.out"
check "away: the dm's ack carries it" grep -q '^{"type":"ack",.*"away":"at lunch"}$' "$work/alice3.out"
check "away: alice is told" grep -qx '{"type":"local","text":"dave is away: at lunch"}' "$work/alice3.out"
grep -q '"away":"at lunch"' "$work/alice3.out" || show "$work/alice3.out"
wait_for "$work/dave.out" '^\{"type":"direct".*"text":"lunch where\?"' && ok || bad "dave did not get the dm while away"
printf '/back\n' >"$work/dave.in"
wait_for "$work/dave.out" '^\{"type":"notice","code":"back"' && ok || bad "dave: no back notice"

# Plain output: stdout a terminal (under script(1)), stdin a pipe → one human line per event.
if command -v script >/dev/null 2>&1; then
  printf 'hello in plain\n' >"$work/plain.in"
  SECURECHAT_HOME="$work/home-alice" NO_COLOR=1 timeout 20 script -qec "\"$bin\" chat --server $srv <\"$work/plain.in\"" /dev/null >"$work/plain.out" 2>&1
  rc=$?
  tr -d '\r' <"$work/plain.out" >"$work/plain.txt"
  if [ "$rc" = 0 ]; then ok; else bad "plain sender: exit $rc, want 0"; show "$work/plain.txt"; fi
  check "plain: connected line" grep -q "^-- connected to $srv as alice" "$work/plain.txt"
  check "plain: room line" grep -qE '^-- you are in general with (carol, dave|dave, carol)$' "$work/plain.txt"
  check "plain: own line as HH:MM <alice> text" grep -qE '^[0-9]{2}:[0-9]{2} <alice> hello in plain$' "$work/plain.txt"
  check "plain: no JSON" [ "$(grep -c '^{' "$work/plain.txt")" = 0 ]
  check "plain: no escape sequences with NO_COLOR" [ "$(grep -c $'\x1b' "$work/plain.txt")" = 0 ]
  grep -qE '^[0-9]{2}:[0-9]{2} <alice> hello in plain$' "$work/plain.txt" || show "$work/plain.txt"
  wait_for "$work/dave.out" '"text":"hello in plain"' && ok || bad "dave did not get the plain sender's line"
else
  echo "  (script(1) not found: plain output not checked)"
fi

# A listener leaving: carol's stdin closes → she leaves (exit 0), dave sees `left`.
leave carol
if wait_for "$work/dave.out" '^\{"type":"left","room":"general","user":"carol"'; then ok; else bad "dave did not see carol leave"; show "$work/dave.out"; fi
check "carol: stderr is quiet" [ ! -s "$work/carol.err" ] || show "$work/carol.err"
leave dave
check "dave: stderr is quiet" [ ! -s "$work/dave.err" ] || show "$work/dave.err"

# No ticket and no --password-stdin, stdin not a terminal: exit 3, naming `securechat login`.
input=""
run "logout dave" 0 as dave "$bin" logout dave --server "$srv"
run "chat without a ticket" 3 as dave "$bin" chat --user dave --server "$srv"
expect "no ticket names securechat login" "securechat login dave --server $srv"
expect "no ticket mentions --password-stdin" "--password-stdin"
# ... and with --password-stdin the first line logs in and the rest is chat.
input="${pw[dave]}"$'\nback with a password\n'
run "chat with --password-stdin" 0 as dave "$bin" chat --user dave --server "$srv" --password-stdin
expect "password chat acked" '"type":"ack"'
grep -q "seven quiet rivers" <<<"$out" && bad "the password was echoed" || ok

# --no-history: none of the room's past, which a plain start does show.
input=""
run "chat --no-history" 0 as alice "$bin" chat --server "$srv" --no-history
refute "--no-history prints no history" '"history":true'
run "chat with history" 0 as alice "$bin" chat --server "$srv"
expect "a plain start shows the history" '"history":true'
run "--no-history with --since-seq" 2 as alice "$bin" chat --server "$srv" --no-history --since-seq 3

# say USER TEXT: one line into general from a pipe; must be acked (exit 0).
say() {
  local o
  o=$(printf '%s\n' "$2" | as "$1" "$bin" chat --user "$1" --server "$srv" 2>&1) && ok || { bad "$1 could not say \"$2\""; show <<<"$o"; }
}

# bot NAME FLAGS...: alice as a bot, `chat --json FLAGS` piped through jq (and
# tee, which keeps every event in NAME.json), its stdin a fifo held open by a
# sleep; sets bot_pid (the chat), bot_holder, bot_jq (tee and jq).
bot() {
  local name=$1; shift
  mkfifo "$work/$name.in" "$work/$name.pipe"
  (tee "$work/$name.json" <"$work/$name.pipe" | jq --unbuffered -c 'select(.type=="message") | {seq, from, text}' >"$work/$name.out") &
  bot_jq=$!
  sleep 300 >"$work/$name.in" &
  bot_holder=$!
  as alice "$bin" chat --server "$srv" --json "$@" <"$work/$name.in" >"$work/$name.pipe" 2>"$work/$name.err" &
  bot_pid=$!
  pids+=("$bot_jq" "$bot_holder" "$bot_pid")
}
# once FILE TEXT: TEXT arrived in FILE (the bot's jq output) exactly once.
once() {
  if wait_for "$1" "\"text\":\"$2\""; then
    local n; n=$(grep -c "\"text\":\"$2\"" "$1")
    [ "$n" = 1 ] && ok || { bad "\"$2\" arrived $n times in $1"; show "$1"; }
  else bad "\"$2\" never arrived in $1"; show "$1"; fi
}

# A bot piped through jq survives a clean restart (SIGTERM) and a crash
# (kill -9) of the server: it reconnects, resumes, and sees every line once.
bot jqbot --no-history
wait_for "$work/jqbot.json" '^\{"type":"history_end"' && ok || { bad "jqbot: never joined"; show "$work/jqbot.err"; }
check "jqbot: --no-history printed no past message" [ ! -s "$work/jqbot.out" ]
say dave "before the restart"
once "$work/jqbot.out" "before the restart"
stop_server
start_server "$work/data" "$port"
say dave "after the sigterm restart"
once "$work/jqbot.out" "after the sigterm restart"
if wait_for "$work/jqbot.json" '^\{"type":"reconnected"'; then ok; else bad "jqbot: no reconnected event"; show "$work/jqbot.err"; fi
kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null
start_server "$work/data" "$port"
say dave "after the kill -9 restart"
once "$work/jqbot.out" "after the kill -9 restart"
wait_for "$work/jqbot.json" '^\{"type":"reconnected"' 2 && ok || { bad "jqbot: no second reconnected event"; show "$work/jqbot.err"; }
once "$work/jqbot.out" "before the restart"
once "$work/jqbot.out" "after the sigterm restart"
check "jqbot: still running" kill -0 "$bot_pid"
# Diagnostics on stderr are text lines, never JSON.
check "jqbot: stderr says it reconnected" grep -q '^securechat: reconnected after [0-9]* s' "$work/jqbot.err"
check "jqbot: stderr says it was disconnected" grep -q '^securechat: disconnected: ' "$work/jqbot.err"
check "jqbot: no JSON on stderr" [ "$(grep -c '{' "$work/jqbot.err")" = 0 ]
kill -TERM "$bot_holder"; wait "$bot_holder" 2>/dev/null
if wait_exit "$bot_pid" && [ "$rc" = 0 ]; then ok; else bad "jqbot: exit $rc after its stdin closed, want 0"; show "$work/jqbot.err"; fi

# --no-reconnect: today's behaviour, the first loss of the connection ends the bot with exit 1.
bot oneshot --no-reconnect --no-history
wait_for "$work/oneshot.json" '^\{"type":"history_end"' && ok || { bad "oneshot: never joined"; show "$work/oneshot.err"; }
stop_server
if wait_exit "$bot_pid" && [ "$rc" = 1 ]; then ok; else bad "oneshot: exit $rc after the server stopped, want 1"; show "$work/oneshot.err"; fi
check "oneshot: says the server shut down" grep -q 'server is shutting down' "$work/oneshot.err"
kill -TERM "$bot_holder"; wait "$bot_holder" 2>/dev/null

# A changed host key met while reconnecting: exit 4 and the known_hosts hint, as a fresh command.
start_server "$work/data" "$port"
bot keybot --no-history
wait_for "$work/keybot.json" '^\{"type":"history_end"' && ok || { bad "keybot: never joined"; show "$work/keybot.err"; }
stop_server
start_server "$work/other-data" "$port"
if wait_exit "$bot_pid" 300 && [ "$rc" = 4 ]; then ok; else bad "keybot: exit $rc after the host key changed, want 4"; show "$work/keybot.err"; fi
check "keybot: the known_hosts hint" grep -q 'hint: .*known_hosts' "$work/keybot.err"
kill -TERM "$bot_holder"; wait "$bot_holder" 2>/dev/null
stop_server

# A ticket that expires mid-chat, piped (no terminal to ask the password on): exit 1 and the `securechat login` hint, no hang.
start_server "$work/data" "$port" --ticket-ttl 5s
input="${pw[alice]}"$'\n'
run "alice logs in for 5 s" 0 as alice "$bin" login alice --server "$srv" --password-stdin
bot expiring --no-history
wait_for "$work/expiring.json" '^\{"type":"history_end"' && ok || { bad "expiring: never joined"; show "$work/expiring.err"; }
if wait_exit "$bot_pid" 300 && [ "$rc" = 1 ]; then ok; else bad "expiring: exit $rc after its ticket expired, want 1"; show "$work/expiring.err"; fi
check "expiring: the securechat login hint" grep -q "hint: run \"securechat login alice --server $srv\"" "$work/expiring.err"
kill -TERM "$bot_holder"; wait "$bot_holder" 2>/dev/null

# Direct messages to someone offline (PROTOCOL.md §7.3), on a server of their
# own that stores at most 2 per recipient: stored and acked `stored`, the cap,
# a name that is no account, a crash between send and delivery, then each of
# carol's logins shown them once, marked late; /history @carol, paged.
stop_server
start_server "$work/dm-data" 0 --max-stored-dms 2
srv="127.0.0.1:$port"
for u in alice carol; do
  input="${pw[$u]}"$'\n'
  run "register $u on the dm server" 0 as "$u" "$bin" register "$u" --server "$srv" --password-stdin --accept-new-host
done
printf '/msg carol first, while you were out\n/msg carol second\n/msg carol third\n/msg zed anyone?\n' | as alice "$bin" chat --server "$srv" >"$work/dm1.out" 2>"$work/dm1.err"
check "dm to offline carol: 2 acks, stored" [ "$(grep -c '^{"type":"ack".*"stored":true' "$work/dm1.out")" = 2 ]
check "the third: nack dm_store_full" [ "$(grep -c '^{"type":"nack".*"code":"dm_store_full"' "$work/dm1.out")" = 1 ]
check "to no account: nack no_such_user" [ "$(grep -c '^{"type":"nack".*"code":"no_such_user"' "$work/dm1.out")" = 1 ]
grep -q '"type":"ack"' "$work/dm1.out" || show "$work/dm1.out" "$work/dm1.err"
# The server crashes before carol comes back; the stored messages are on its disk.
kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null
start_server "$work/dm-data" "$port" --max-stored-dms 2
# late FILE: the stored DMs a login of carol's was shown, as "seq text".
late() { grep '^{"type":"direct".*"late":true' "$1" | while IFS= read -r l; do printf '%s %s\n' "$(jnum "$l" seq)" "$(jstr "$l" text)"; done; }
# carol's account on a second machine (another SECURECHAT_HOME, a copy of her files: the same key, so the
# same device today). The server keeps her read marker (PROTOCOL.md §7.14): shown and read on the laptop,
# they are not shown again there, nor on the phone.
cp -a "$work/home-carol" "$work/home-carol-phone"
as carol "$bin" chat --server "$srv" --json </dev/null >"$work/carol-laptop.out" 2>"$work/carol-laptop.err"
got=$(late "$work/carol-laptop.out" | cut -d' ' -f2-)
if [ "$got" = $'first, while you were out\nsecond' ]; then ok; else bad "carol's laptop: late DMs \"$got\""; show "$work/carol-laptop.out" "$work/carol-laptop.err"; fi
check "carol's laptop: each once" [ "$(late "$work/carol-laptop.out" | cut -d' ' -f1 | sort | uniq -d | wc -l)" = 0 ]
check "carol's laptop: from alice" [ "$(grep '^{"type":"direct"' "$work/carol-laptop.out" | grep -vc '"from":"alice"')" = 0 ]
for dev in laptop phone; do
  home=carol; [ "$dev" = phone ] && home=carol-phone
  as "$home" "$bin" chat --server "$srv" --json </dev/null >"$work/carol-$dev-again.out" 2>"$work/carol-$dev-again.err"
  if grep -q '^{"type":"room"' "$work/carol-$dev-again.out" && [ -z "$(late "$work/carol-$dev-again.out")" ]; then ok; else bad "carol's $dev, next run: late DMs again"; show "$work/carol-$dev-again.out" "$work/carol-$dev-again.err"; fi
done
# Shown to a login, they no longer count against the cap; alice pages back through what they said.
# (`more` pages back from the answer before it: the next line waits for that answer.)
mkfifo "$work/dm2.in"
sleep 300 >"$work/dm2.in" &
holder=$!
as alice "$bin" chat --server "$srv" --json <"$work/dm2.in" >"$work/dm2.out" 2>"$work/dm2.err" &
pid=$!
pids+=("$holder" "$pid")
printf '/msg carol third, now\n/history @carol 2\n' >"$work/dm2.in"
wait_for "$work/dm2.out" '^\{"type":"history_end","with":"carol"' || bad "alice: no answer to /history @carol"
printf '/history @carol more\n' >"$work/dm2.in"
wait_for "$work/dm2.out" '^\{"type":"history_end","with":"carol"' 2 || bad "alice: no answer to /history @carol more"
kill -TERM "$holder"; wait "$holder" 2>/dev/null
if wait_exit "$pid" && [ "$rc" = 0 ]; then ok; else bad "alice: exit $rc after its stdin closed, want 0"; show "$work/dm2.err"; fi
check "after carol's login, a dm to her is stored again" [ "$(grep -c '^{"type":"ack".*"stored":true' "$work/dm2.out")" = 1 ]
hist=$(grep '^{"type":"direct".*"history":true' "$work/dm2.out" | while IFS= read -r l; do jstr "$l" text; echo; done)
if [ "$hist" = $'second\nthird, now\nfirst, while you were out' ]; then ok; else bad "/history @carol pages: \"$hist\""; show "$work/dm2.out" "$work/dm2.err"; fi
check "/history @carol: the first page says more" grep -q '^{"type":"history_end","with":"carol","count":2,"more":true}' "$work/dm2.out"
check "/history @carol more: the last page" grep -q '^{"type":"history_end","with":"carol","count":1}' "$work/dm2.out"
# carol's next run on the laptop is shown the one stored since, and only it.
as carol "$bin" chat --server "$srv" --json </dev/null >"$work/carol-laptop-3.out" 2>"$work/carol-laptop-3.err"
got=$(late "$work/carol-laptop-3.out" | cut -d' ' -f2-)
if [ "$got" = "third, now" ]; then ok; else bad "carol's laptop, third run: late DMs \"$got\""; show "$work/carol-laptop-3.out" "$work/carol-laptop-3.err"; fi

# The server stops cleanly.
stop_server

finish chat.sh
