#!/usr/bin/env bash
# The transcript a cluster keeps in PostgreSQL (TRANSCRIPT.md §2.7), through
# the binary: a log written by the writer on PgStorage (test/e2e/
# pglog_fixture.ts, a real postgres) is verified with --database and with
# SECURECHAT_DATABASE_URL, exported as entries and as its directory, the
# directory verified with the file verifier, followed while a later run
# writes to it, and a line altered in the table
# fails verify with exit 5 naming its file and line. The URL's password is
# never printed. Skipped, loudly, only where PostgreSQL is not installed.
set -uo pipefail
bin=$(realpath "${1:-./dist/securechat}")
. "$(dirname "$0")/lib.sh"
begin

if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then echo "FAIL pglog.sh: PostgreSQL is not installed"; exit 1; fi
  echo "!!! SKIPPING pglog.sh: PostgreSQL not installed (sudo apt-get install -y postgresql)"; exit 0
fi

bun "$(dirname "$0")/pglog_fixture.ts" "$work" >"$work/fixture.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 600); do [ -e "$work/ready" ] && break; sleep 0.1; done
check "the fixture wrote a log to PostgreSQL" test -e "$work/ready"
[ -e "$work/ready" ] || { show "$work/fixture.log"; finish pglog.sh; }
url=$(cat "$work/url")
pw=$(bun -e 'console.log(new URL(process.argv[1]).password)' "$url")
fp=$(cat "$work/fingerprint")
mode_is "the URL file is private" "$work/url" 600

run "verify --database" 0 env SECURECHAT_DATABASE_URL= "$bin" transcript verify --database "$url" --host-key "$fp"
expect "verify --database: the entries" "PASS: "
expect "verify --database: a password in argv is warned about" "prefer SECURECHAT_DATABASE_URL"
refute "verify --database: no password" "$pw"
run "verify from SECURECHAT_DATABASE_URL" 0 env SECURECHAT_DATABASE_URL="$url" "$bin" transcript verify --host-key "$fp"
db_report=$out
refute "verify from the environment: no warning" "visible to other users"

run "export --database" 0 env SECURECHAT_DATABASE_URL="$url" "$bin" transcript export --room ops
check "export --database: every message" test "$(grep -c '"type":"message"' <<<"$out")" = 50

run "export --directory" 0 env SECURECHAT_DATABASE_URL="$url" "$bin" transcript export --directory "$work/copy/transcript" --host-key "$fp"
expect "export --directory: what it wrote" "lines in"
check "export --directory: several files, each 0600" test "$(stat -c %a "$work"/copy/transcript/*.jsonl | sort -u)" = 600
run "the file verifier on the export" 0 "$bin" transcript verify "$work/copy/transcript" --host-key "$fp"
check "the same report over the directory as over the database" test "$out" = "$db_report"
run "export --directory into a directory that is not empty" 2 env SECURECHAT_DATABASE_URL="$url" "$bin" transcript export --directory "$work/copy/transcript"

SECURECHAT_DATABASE_URL="$url" "$bin" transcript follow --from-end --host-key "$fp" >"$work/follow.out" 2>"$work/follow.err" &
follow_pid=$!
pids+=("$follow_pid")
check "follow --database: what is there verified" wait_for "$work/follow.err" "^following postgres://.*\*\*\*.*: [0-9]+ existing entries verified"
kill -USR2 "${pids[0]}"
check "follow --database: a later run's 25 messages, as they are committed" wait_for "$work/follow.out" '"text":"run 3 line' 25
kill -INT "$follow_pid"; wait "$follow_pid"
check "follow --database: exit 0 when interrupted" test $? = 0
check "follow --database: nothing of before --from-end" test "$(grep -c '"text":"run [12] line' "$work/follow.out")" = 0
check "follow --database: no password" test "$(cat "$work/follow.out" "$work/follow.err" | grep -cF -- "$pw")" = 0

kill -USR1 "${pids[0]}"
for _ in $(seq 1 100); do [ -e "$work/tampered" ] && break; sleep 0.1; done
where=$(cat "$work/tampered" 2>/dev/null)
run "verify after a line was altered in the table" 5 env SECURECHAT_DATABASE_URL="$url" "$bin" transcript verify --host-key "$fp"
expect "verify names the altered line" "FAIL: $where:"
refute "the failure shows no password" "$pw"

run "a database that is not there" 1 env SECURECHAT_DATABASE_URL="postgres://chat:s3cr3t-e2e@127.0.0.1:1/chat" "$bin" transcript verify
expect "the unreachable database, named redacted" "postgres://chat:***@127.0.0.1:1/chat"
refute "the unreachable database: no password" "s3cr3t-e2e"

kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null
finish pglog.sh
