#!/usr/bin/env bash
# Drives the compiled binary through its command-line contract: --version,
# --help on every level (each page within 80 columns, `securechat help CMD`
# the same page), exit code 2 with a one-line error for bad usage, "did you
# mean", short flags, a refused connection's hint, and the default server
# (--server, then $SECURECHAT_SERVER, then config.toml).
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

# Every help page fits an 80-column terminal: no line over 80, none ending in a
# blank; `securechat help CMD` is the same page.
for c in "" serve register login logout chat transcript "transcript verify" "transcript export" "transcript follow" "transcript keygen"; do
  # shellcheck disable=SC2086
  run "$c --help" 0 "$bin" $c --help
  wide=$(awk 'length($0) > 80 || /[ \t]$/ { printf "%d: %s\n", NR, $0 }' <<<"$out")
  if [ -z "$wide" ]; then ok; else bad "securechat $c --help: lines over 80 columns or with trailing blanks"; show <<<"$wide"; fi
  page=$out
  # shellcheck disable=SC2086
  run "help $c" 0 "$bin" help $c
  [ "$out" = "$page" ] && ok || bad "securechat help $c differs from securechat $c --help"
done
run "help lists help" 0 "$bin" help;            expect "help lists help" "help"

# Did you mean; short flags.
run "typo in a command" 2 "$bin" regster alice; expect "command suggestion" 'hint: did you mean "register"?'
run "typo in an option" 2 "$bin" chat --sever h:1; expect "option suggestion" 'hint: did you mean "--server"?'
run "short -s is --server" 2 "$bin" logout alice -s host:0; expect "short -s" '"host:0" is not a server address'
run "-V" 0 "$bin" -V;                            expect "-V prints the version" "securechat 0."

# Mistakes about the environment are one line and a hint, never "internal error".
begin
export SECURECHAT_HOME="$work/home"
run "connection refused" 1 "$bin" register bob -s 127.0.0.1:1 --password-stdin
expect "refused names the address" "cannot connect to 127.0.0.1:1: connection refused"
expect "refused hints at serve" 'hint: is the server running? start one with "securechat serve --host 127.0.0.1 --port 1"'
refute "refused is not internal" "internal error"
mkdir -p "$SECURECHAT_HOME"
printf 'server = "chat.example:7447"\nsevrer = "x"\n' >"$SECURECHAT_HOME/config.toml"
run "bad config.toml" 2 "$bin" chat
expect "bad config names file and line" "$SECURECHAT_HOME/config.toml:2: unknown key \"sevrer\""
expect "bad config suggests" 'did you mean "server"?'
printf '# the default server\nserver = "cli-e2e.invalid:7447"\n' >"$SECURECHAT_HOME/config.toml"
run "config.toml's server" 2 "$bin" chat;       expect "chat uses config.toml's server" "nobody is logged in to cli-e2e.invalid:7447"
run "\$SECURECHAT_SERVER over config.toml" 2 env SECURECHAT_SERVER=cli-env.invalid:7447 "$bin" chat
expect "chat uses \$SECURECHAT_SERVER" "nobody is logged in to cli-env.invalid:7447"
run "--server over both" 2 env SECURECHAT_SERVER=cli-env.invalid:7447 "$bin" chat -s cli-flag.invalid:7447
expect "chat uses --server" "nobody is logged in to cli-flag.invalid:7447"

finish cli.sh
