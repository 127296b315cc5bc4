#!/usr/bin/env bash
# Drives the binary through the auditor's workflow: a real session's
# transcript verifies (and --against the client's own transcript), a tampered
# copy fails with exit 5 naming the line, a truncated copy is caught by
# --against, export filters work, sealed bodies are unreadable without the
# auditor key and readable with it, and kill -9 during a burst of messages
# loses no acknowledged message: after a restart the transcript verifies and
# the torn tail is reported; a restart on an acknowledged message rewritten
# after the crash refuses (a checkpoint signed it before its ack), and one cut
# away and forged anew is flagged by verify and caught by --against.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

PW='correct horse battery staple'
# as USER COMMAND...: run with USER's own client state ("machine"), bounded in time.
as() { local u=$1; shift; env SECURECHAT_HOME="$work/home-$u" NO_COLOR=1 timeout 120 "$@"; }
register() { printf '%s\n' "$PW" | as "$1" "$bin" register "$1" --server "127.0.0.1:$port" --password-stdin --accept-new-host >/dev/null 2>&1 || bad "register $1"; }

# --- a plain session -------------------------------------------------------
# A checkpoint every 4 entries: however the 30 lines are grouped into fsyncs (one on a quiet machine, a
# few under load), signed checkpoints fall all along the log, so a tree.hashes cut below (to two thirds)
# always has an earlier one to be taken up to.
start_server "$work/data" 0 --checkpoint-every 4
register alice
seq 1 30 | sed 's/^/line /' | as alice "$bin" chat --user alice --server "127.0.0.1:$port" --transcript "$work/alice.tr" >"$work/alice.out" 2>&1
check "alice's 30 lines acknowledged" test "$(grep -c '"type":"ack"' "$work/alice.out")" = 30
check "acks carry transcript seq and head" grep -q '"tseq":[0-9]*,"head":"[0-9a-f]\{64\}"' "$work/alice.out"
stop_server
tr="$work/data/transcript"

run "verify pins the host key" 0 "$bin" transcript verify "$tr" --host-key "$work/data/host_key.pub"
expect "verify says PASS" "PASS"
expect "verify prints the tree's root" "(RFC 9162 Merkle tree of the"

# The tree checkpoint (TRANSCRIPT.md §4.1): a signed note under the key serve printed.
vkey=$(jq -r 'select(.event=="listening") | .vkey' "$work/server.log")
check "serve prints a vkey: ORIGIN+KEYID+KEY" grep -qE '^securechat/[0-9a-f]{16}\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$' <<<"$vkey"
run "transcript checkpoint prints the last signed note" 0 "$bin" transcript checkpoint --data "$work/data"
note=$out
origin=${vkey%%+*}
lines=$(cat "$tr"/*.jsonl | wc -l)
check "…origin, the tree size (every line but the checkpoint), a root" test "$(sed -n 1,3p <<<"$note" | head -2 | tr '\n' ' ')" = "$origin $((lines - 1)) "
check "…then a blank line and the signature under that origin" grep -q "^— $origin [A-Za-z0-9+/]*=*$" <<<"$note"
keyid=$(sed -n '5p' <<<"$note" | awk '{print $3}' | base64 -d 2>/dev/null | head -c 4 | od -An -tx1 | tr -d ' \n')
check "…whose key ID is the vkey's" test "$keyid" = "$(cut -d+ -f2 <<<"$vkey")"
# A proof of one of alice's messages (TRANSCRIPT.md §4.2), checked offline with the vkey alone.
mseq=$("$bin" transcript export --data "$work/data" 2>/dev/null | jq -r 'select(.type=="message" and .text=="line 7") | .seq')
run "transcript prove --seq: a proof of alice's \"line 7\"" 0 "$bin" transcript prove --data "$work/data" --seq "$mseq"
"$bin" transcript prove --data "$work/data" --seq "$mseq" >"$work/line7.tlog-proof" 2>/dev/null
check "…in the c2sp.org/tlog-proof@v1 format" test "$(head -1 "$work/line7.tlog-proof")" = "c2sp.org/tlog-proof@v1"
run "verify-proof with the vkey: exit 0, the entry on stdout" 0 "$bin" transcript verify-proof "$work/line7.tlog-proof" --vkey "$vkey"
check "…the entry is alice's line 7" test "$(jq -r .text <<<"$(head -1 <<<"$out")")" = "line 7"
sed 's/^\(index .*\)$/index 0/' "$work/line7.tlog-proof" >"$work/moved.tlog-proof"
run "a proof moved to another index: exit 5" 5 "$bin" transcript verify-proof "$work/moved.tlog-proof" --vkey "$vkey"
expect "…saying it is not that leaf" "is not leaf 0"
printf '%s\n' '{"forged":true}' >"$work/forged.json"
run "another entry than the one proved: exit 5" 5 "$bin" transcript verify-proof "$work/line7.tlog-proof" --vkey "$vkey" --entry "$work/forged.json"
rm "$work/data/tree.hashes"
start_server "$work/data"
stop_server
check "a deleted tree.hashes is rebuilt at start, and said so" grep -q '"event":"transcript_tree_rebuilt".*"reason":"no tree.hashes file"' "$work/server.log"
check "…before the rebuild starts too (it reads every line)" grep -q '"event":"transcript_tree_rebuilding".*"reason":"no tree.hashes file"' "$work/server.log"
# A machine that stopped before tree.hashes' last writes reached the disk: its end is gone. A third of
# it: cutting only the hashes after the last checkpoint (a few, depending on the tree's size) would
# leave everything the last checkpoint signs, and nothing to resume.
truncate -s "$(( $(stat -c %s "$work/data/tree.hashes") * 2 / 3 / 32 * 32 ))" "$work/data/tree.hashes"
start_server "$work/data"
stop_server
check "a tree.hashes that lost its end is taken up to an earlier checkpoint, and said so" grep -q '"event":"transcript_tree_resumed".*"reason":"tree.hashes is shorter than the transcript"' "$work/server.log"
check "…not rebuilt from every line" test "$(grep -c transcript_tree_rebuil "$work/server.log")" = 0
run "…and a proof from it still verifies" 0 "$bin" transcript prove --data "$work/data" --seq "$mseq"
"$bin" transcript prove --data "$work/data" --seq "$mseq" >"$work/line7-again.tlog-proof" 2>/dev/null
run "…offline, with the vkey" 0 "$bin" transcript verify-proof "$work/line7-again.tlog-proof" --vkey "$vkey"
run "…and the transcript still verifies" 0 "$bin" transcript verify "$tr" --host-key "$work/data/host_key.pub"
run "verify against alice's own view" 0 "$bin" transcript verify "$tr" --host-key "$work/data/host_key.pub" --against "$work/alice.tr"

mkdir -p "$work/edited-data" && cp -r "$tr" "$work/edited-data/transcript" && ln -s "$work/edited-data/transcript" "$work/edited"
f=$(ls "$work/edited"/*.jsonl | head -1)
n=$(grep -n '"text":"line 7"' "$f" | cut -d: -f1)
sed -i 's/"text":"line 7"/"text":"line 8"/' "$f"
run "an edited copy fails" 5 "$bin" transcript verify "$work/edited"
expect "the failure names the edited line" "$(basename "$f"):$n: entry edited"

cp -r "$tr" "$work/deleted"
f=$(ls "$work/deleted"/*.jsonl | head -1)
sed -i "${n}d" "$f"
run "a copy with a deleted entry fails" 5 "$bin" transcript verify "$work/deleted"
expect "the failure says deleted" "deleted"

cp -r "$tr" "$work/truncated"
f=$(ls "$work/truncated"/*.jsonl | head -1)
keep=$(( $(grep -n '"text":"line 20"' "$f" | cut -d: -f1) - 1 ))
head -n "$keep" "$f" >"$f.new" && mv "$f.new" "$f"
run "a truncated copy still chains" 0 "$bin" transcript verify "$work/truncated"
expect "…but says its tail is not covered" "not"
run "--against catches the truncation" 5 "$bin" transcript verify "$work/truncated" --against "$work/alice.tr"
expect "--against names the missing message" "not in the server transcript"

run "wrong host key fails" 5 "$bin" transcript verify "$tr" --host-key "$(printf 'ed25519 %s' "$(head -c 32 /dev/urandom | base64)")"

# --tree-only (TRANSCRIPT.md §8.6): leaves, the root at every checkpoint, their signatures.
full_root=$("$bin" transcript verify "$tr" --host-key "$work/data/host_key.pub" | grep '^root:')
run "verify --tree-only passes the untouched log" 0 "$bin" transcript verify "$tr" --tree-only --host-key "$work/data/host_key.pub"
expect "…with the root the full verify prints" "$full_root"
expect "…and says what it did not check" "not each entry's form, the hash chain"
run "--tree-only: a wrong leaf (line 7 edited) fails at the next checkpoint" 5 "$bin" transcript verify "$work/edited" --tree-only --host-key "$work/data/host_key.pub"
expect "…whose root is not that of the lines before it" "the tree root it signs is not the root of the"
treecopy() { rm -rf "$work/$1" && cp -r "$tr" "$work/$1" && ls "$work/$1"/*.jsonl | head -1; }
# rehash FILE N: line N's hash recomputed for its changed content (TRANSCRIPT.md §3.4), as a forger would.
rehash() {
  local canon h
  canon=$(sed -n "${2}p" "$1" | sed 's/,"hash":"[0-9a-f]*"}$/}/')
  h=$({ printf 'securechat/1 transcript entry\0'; printf '%s' "$canon"; } | sha256sum | cut -c1-64)
  sed -i "${2}s/\"hash\":\"[0-9a-f]*\"}\$/\"hash\":\"$h\"}/" "$1"
}
f=$(treecopy wrongroot)
k=$(grep -n '"type":"checkpoint"' "$f" | sed -n 3p | cut -d: -f1)
sed -i "${k}s|\"root\":\"[A-Za-z0-9+/=]*\"|\"root\":\"$(head -c 32 /dev/zero | base64)\"|" "$f"
rehash "$f" "$k"
run "--tree-only: a checkpoint with a wrong root fails" 5 "$bin" transcript verify "$work/wrongroot" --tree-only --host-key "$work/data/host_key.pub"
expect "…at its line: its signature does not cover that root" "$(basename "$f"):$k: bad checkpoint note signature"
f=$(treecopy forgedsig)
other=$(grep '"type":"checkpoint"' "$f" | sed -n 2p | jq -r .note_sig)
sed -i "${k}s|\"note_sig\":\"[A-Za-z0-9+/=]*\"|\"note_sig\":\"$other\"|" "$f"
rehash "$f" "$k"
run "--tree-only: a checkpoint with a forged (another note's) signature fails" 5 "$bin" transcript verify "$work/forgedsig" --tree-only --host-key "$work/data/host_key.pub"
expect "…at its line" "$(basename "$f"):$k: bad checkpoint note signature"
run "--tree-only with --against is a usage error" 2 "$bin" transcript verify "$tr" --tree-only --against "$work/alice.tr"

out=$("$bin" transcript export --data "$work/data" --user alice 2>&1)
check "export --user alice has her 30 messages" test "$(grep -c '"type":"message"' <<<"$out")" = 30
out=$("$bin" transcript export --data "$work/data" --room nowhere 2>&1)
check "export --room filters" test "$(grep -c '"type":"message"' <<<"$out")" = 0
run "export of a tampered source stops with exit 5" 5 "$bin" transcript export --data "$work/edited-data"
expect "export names the bad line" "entry edited"

# --- sealed bodies ---------------------------------------------------------
run "keygen" 0 "$bin" transcript keygen --out "$work/auditor.key"
pub=$(grep -o 'securechat-auditor-pub-v1 [A-Za-z0-9+/=]*' <<<"$out")
mode_is "auditor key" "$work/auditor.key" 600
start_server "$work/sealed" 0 --auditor-key "$pub"
register carol
printf 'secret line one\nsecret line two\n' | as carol "$bin" chat --user carol --server "127.0.0.1:$port" >/dev/null 2>&1 || bad "carol's chat"
stop_server
if grep -rq "secret line" "$work/sealed"; then bad "message text found at rest in the sealed data dir"; else ok; fi
run "sealed transcript verifies without the auditor key" 0 "$bin" transcript verify "$work/sealed/transcript"
out=$("$bin" transcript export --data "$work/sealed" 2>&1)
check "export without the key shows no text" test "$(grep -c 'secret line' <<<"$out")" = 0
out=$("$bin" transcript export --data "$work/sealed" --identity "$work/auditor.key" 2>&1)
check "export with the key shows the text" test "$(grep -c 'secret line' <<<"$out")" = 2

# --- kill -9 during a burst ------------------------------------------------
start_server "$work/crash"
register dave
crash_port=$port
# --no-reconnect: this client ends with the server (a reconnecting one would wait for the restart).
for round in 1 2 3; do
  seq 1 300 | sed "s/^/round $round line /" | as dave "$bin" chat --user dave --server "127.0.0.1:$port" --transcript "$work/dave.tr" --no-reconnect >/dev/null 2>&1 &
  client=$!
  pids+=("$client")
  wait_for "$work/dave.tr" "\"kind\":\"ack\".*round $round line" 20 || bad "round $round: no acks before the crash"
  kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=""
  wait_exit "$client" || bad "round $round: the client did not exit after the server died"
  start_server "$work/crash" "$crash_port"
  check "round $round: the restart records a recovery" grep -q '"type":"recovery"' "$work/crash/transcript/"*.jsonl
  run "round $round: verify after kill -9" 0 "$bin" transcript verify "$work/crash/transcript"
  run "round $round: every acknowledged message survived" 0 "$bin" transcript verify "$work/crash/transcript" --against "$work/dave.tr"
done
acked=$(grep -c '"kind":"ack"' "$work/dave.tr")
check "some messages were acknowledged across the crashes ($acked)" test "$acked" -gt 0
stop_server

# --- a tail rewritten while the server is down -------------------------------
# kill -9 after an acknowledged message, then what someone who can write the
# files but lacks the host key can do (TRANSCRIPT.md §10). The ack waited for
# a checkpoint that signs the message (§6), with the default flags as with
# --checkpoint-every 1: changing its text and recomputing the hash of every
# later entry breaks that checkpoint, and the restart refuses. The other move,
# cutting the files back to before the message and writing a forged one in
# its place, leaves entries that no checkpoint of their run signed: the
# restart cannot tell, verify warns, and the sender's acks show the rewrite.
rewrite() { # DIR FROM TO [cut]: the entry whose text is FROM gets TO, every later hash is recomputed; with "cut", nothing after it is kept
  DIR=$1 FROM=$2 TO=$3 CUT=${4:-} bun -e '
    const fs = require("node:fs"), { createHash } = require("node:crypto");
    const dir = process.env.DIR;
    const canonical = (e) => "{" + Object.keys(e).filter((k) => k !== "hash").sort()
      .map((k) => JSON.stringify(k) + ":" + (typeof e[k] === "string" ? JSON.stringify(e[k]) : String(e[k]))).join(",") + "}";
    let prev = null;
    for (const f of fs.readdirSync(dir).filter((n) => /^\d{4}-\d{2}-\d{2}\.\d{12}\.jsonl$/.test(n)).sort((a, b) => Number(a.slice(11, 23)) - Number(b.slice(11, 23)))) {
      const out = fs.readFileSync(`${dir}/${f}`, "utf8").split("\n").filter(Boolean).map((line) => {
        const e = JSON.parse(line);
        if (prev !== null && process.env.CUT) return "";
        if (prev === null && e.text === process.env.FROM) { e.text = process.env.TO; prev = e.prev; }
        if (prev === null) return line + "\n";
        e.prev = prev;
        const c = canonical(e);
        e.hash = createHash("sha256").update("securechat/1 transcript entry\0" + c).digest("hex");
        prev = e.hash;
        return c.slice(0, -1) + ",\"hash\":\"" + e.hash + "\"}\n";
      });
      if (out.join("") === "" && prev !== null) fs.rmSync(`${dir}/${f}`); else fs.writeFileSync(`${dir}/${f}`, out.join(""));
    }
    if (prev === null) process.exit(1);'
}
# owe USER DATA [FLAGS...]: a server on DATA; USER sends "I owe bob 100 EUR", is acknowledged, and the server is killed (-9).
owe() {
  local user=$1 data=$2; shift 2
  start_server "$data" 0 "$@"
  register "$user"
  printf 'I owe bob 100 EUR\n' | as "$user" "$bin" chat --user "$user" --server "127.0.0.1:$port" --transcript "$work/$user.tr" >/dev/null 2>&1
  check "$user's message acknowledged" grep -q '"kind":"ack".*100 EUR' "$work/$user.tr"
  kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=""
}
for every in 1 default; do
  data="$work/forged-$every"
  flags=(); if [ "$every" = 1 ]; then flags=(--checkpoint-every 1); fi
  owe "erin$every" "$data" "${flags[@]}"
  check "checkpoint-every $every: the text rewritten, the hashes recomputed" rewrite "$data/transcript" "I owe bob 100 EUR" "I owe bob 100,000 EUR"
  run "checkpoint-every $every: a restart on the rewritten tail refuses with the transcript exit code" 5 timeout 20 "$bin" serve --port 0 --data "$data" "${flags[@]}"
  expect "…naming the line" "bad checkpoint"
  expect "…and transcript verify" "run \"securechat transcript verify $data/transcript\""
  run "checkpoint-every $every: transcript verify finds the same line" 5 "$bin" transcript verify "$data/transcript" --host-key "$data/host_key.pub"
  expect "…a bad checkpoint" "bad checkpoint"
done
data="$work/forged-cut"
owe frank "$data"
check "frank's message and all after it cut, a forged one in its place" rewrite "$data/transcript" "I owe bob 100 EUR" "I owe bob 100,000 EUR" cut
start_server "$data"
stop_server
run "the forged transcript verifies: the restart's checkpoints signed what the files held" 0 "$bin" transcript verify "$data/transcript" --host-key "$data/host_key.pub"
expect "…but verify says the forged message was never signed by its run" "(1 message), written before the crash at seq"
expect "…and what that means" "were never signed: the server acknowledged none of them, and they rest on the files alone"
run "…and frank's acks show the rewrite" 5 "$bin" transcript verify "$data/transcript" --host-key "$data/host_key.pub" --against "$work/frank.tr"
expect "…as a rewritten log" "the server log was rewritten"

# --- auditor ergonomics: ISO times, relative --since, known_hosts pins --------
# Every exported line's `time` is its `ts` in ISO 8601 UTC (jq's todate has no
# milliseconds: compared to the second, then the milliseconds).
times_match() { jq -e -s 'length > 0 and all(.[]; .time == ((.ts / 1000 | floor | todate) | sub("Z$"; "")) + "." + ((.ts % 1000) + 1000 | tostring | .[1:]) + "Z")' >/dev/null; }
msgs() { jq -c 'select(.type == "message" and .from == "alice")' | wc -l; }
"$bin" transcript export --data "$work/data" >"$work/export.jsonl" 2>/dev/null
check "export: every line has time = ts as ISO 8601 UTC" times_match <"$work/export.jsonl"
check "export: ts is still epoch ms" jq -e -s 'all(.[]; .ts | type == "number")' "$work/export.jsonl" >/dev/null
"$bin" transcript export --data "$work/data" --stored >"$work/stored.jsonl" 2>/dev/null
check "export --stored: the lines as stored" cmp -s "$work/stored.jsonl" <(cat "$tr"/*.jsonl)
check "export --since yesterday: alice's 30" test "$("$bin" transcript export --data "$work/data" --since yesterday 2>/dev/null | msgs)" = 30
check "export --since 1h: alice's 30" test "$("$bin" transcript export --data "$work/data" --since 1h 2>/dev/null | msgs)" = 30
check "export --since 2h --until 1h: none" test "$("$bin" transcript export --data "$work/data" --since 2h --until 1h 2>/dev/null | msgs)" = 0
hm=$(jq -r 'select(.type == "message") | .time[11:16]' "$work/export.jsonl" | head -1)
check "export --since $hm (today, UTC): alice's 30" test "$("$bin" transcript export --data "$work/data" --since "$hm" 2>/dev/null | msgs)" = 30
run "export --since tomorrow: a usage error" 2 "$bin" transcript export --data "$work/data" --since tomorrow
expect "…naming the forms" "08:00 (today, UTC), 2h or 7d (ago), today, yesterday"
kh="$work/home-alice/known_hosts"
run "verify --host-key with alice's known_hosts line" 0 "$bin" transcript verify "$tr" --host-key "$(head -1 "$kh")"
refute "…is a pin (no trust-on-first-use note)" "pass --host-key"
run "verify --host-key with alice's known_hosts file" 0 "$bin" transcript verify "$tr" --host-key "$kh"
"$bin" transcript follow --data "$work/data" >"$work/follow.jsonl" 2>/dev/null &
follower=$!
pids+=("$follower")
wait_for "$work/follow.jsonl" '"type":"server_stop"' || bad "follow printed nothing"
kill -TERM "$follower"; wait "$follower" 2>/dev/null
check "follow: every line has time = ts as ISO 8601 UTC" times_match <"$work/follow.jsonl"

finish transcript.sh
