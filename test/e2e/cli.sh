#!/usr/bin/env bash
# Drives the compiled binary through its command-line contract: --version,
# --help on every level, and exit code 2 with a one-line error for bad usage.
set -uo pipefail
bin=${1:-./dist/securechat}
. "$(dirname "$0")/lib.sh"

# no_stack NAME: passes when $out (of the last run) has no stack trace.
no_stack() {
  if grep -qE '^\s+at ' <<<"$out"; then bad "$1: printed a stack trace"; else ok; fi
}

run version 0 "$bin" --version;                expect version "securechat 0."
run help 0 "$bin" --help
for c in serve register login chat transcript; do expect "help lists $c" "$c"; done
for c in serve register login chat transcript "transcript verify" "transcript export" "transcript follow"; do
  # shellcheck disable=SC2086
  run "$c --help" 0 "$bin" $c --help;          expect "$c --help has an example" "EXAMPLES"
done
run "unknown command" 2 "$bin" frobnicate;     expect "unknown command named" 'unknown command "frobnicate"'; no_stack "unknown command"
run "bad flag" 2 "$bin" serve --no-such-flag;  expect "bad flag named" '--no-such-flag'; no_stack "bad flag"
run "missing value" 2 "$bin" serve --port;     expect "missing value" 'needs a value'
run "missing user" 2 "$bin" register;          expect "missing user" 'USER'
run "extra argument" 2 "$bin" login alice bob; expect "extra argument" 'unexpected extra argument'; refute "extra argument not echoed" 'bob'

finish cli.sh
