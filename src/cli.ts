/**
 * The root command and the runner. citty only defines the commands: its
 * parser keeps unknown flags and guesses, and a security tool must not, so
 * this runner resolves the sub-command itself, parses the arguments strictly
 * (src/commands/argv.ts: unknown flags and stray arguments are exit 2, with
 * "did you mean"), prints help pages that fit 80 columns
 * (src/commands/usage.ts) for --help, -h and `securechat help [COMMAND]`,
 * handles --version, and prints every error as one line and hints, with the
 * exit code fromError (src/commands/exit.ts) gives it (docs/DESIGN.md §2, §3).
 */
import { VERSION } from "./version.ts";
import type { ArgsDef, CommandDef } from "citty";
import { CliError, EXIT, fromError } from "./commands/exit.ts";
import { command, examples, notes } from "./commands/define.ts";
import { parseArgv } from "./commands/argv.ts";
import { didYouMean } from "./suggest.ts";
import { renderUsage } from "./commands/usage.ts";
import { renderSegments, terminalBlock } from "./client/tui/sanitize.ts";


type AnyCommand = CommandDef<ArgsDef>;
const lazy = (load: () => Promise<{ default: unknown }>) => () => load().then((m) => m.default as AnyCommand);

export const root = command({
  meta: { name: "securechat", version: VERSION, description: "Secure multi-user chat: authenticated handshake, encrypted records, auditable transcripts" },
  subCommands: {
    serve: lazy(() => import("./commands/serve.ts")),
    register: lazy(() => import("./commands/register.ts")),
    login: lazy(() => import("./commands/login.ts")),
    logout: lazy(() => import("./commands/logout.ts")),
    passwd: lazy(() => import("./commands/passwd.ts")),
    sessions: lazy(() => import("./commands/sessions.ts")),
    admin: lazy(() => import("./commands/admin.ts")),
    device: lazy(() => import("./commands/device.ts")),
    key: lazy(() => import("./commands/key.ts")),
    chat: lazy(() => import("./commands/chat.ts")),
    transcript: lazy(() => import("./commands/transcript.ts")),
  },
  examples: [
    "securechat serve",
    "securechat register alice",
    "securechat chat",
    "securechat register alice -s chat.example:7447 && securechat chat -r ops",
    "securechat help chat",
    "securechat transcript verify ~/.local/share/securechat/transcript",
  ],
});

async function resolve<T>(v: T | Promise<T> | (() => T | Promise<T>) | undefined): Promise<T | undefined> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}

interface Resolved {
  cmd: AnyCommand;
  path: string[];
  rest: string[];
}

const HELP = new Set(["--help", "-h"]);
const VERSION_FLAGS = new Set(["--version", "-v", "-V"]);

/** Walks `securechat sub sub…`; an unknown name where a sub-command is due is a usage error. */
async function resolveCommand(argv: string[]): Promise<Resolved> {
  let cmd = root as AnyCommand;
  const path = ["securechat"];
  let rest = argv;
  for (;;) {
    const subs = await resolve(cmd.subCommands);
    if (!subs) return { cmd, path, rest };
    const i = rest.findIndex((a) => !a.startsWith("-"));
    // Commands with sub-commands take no options of their own (only --help, --debug).
    const stray = rest.slice(0, i < 0 ? rest.length : i).find((a) => !HELP.has(a) && a !== "--debug");
    if (stray) {
      const near = didYouMean(stray.split("=")[0]!, path.length === 1 ? ["--help", "--version", "--debug"] : ["--help", "--debug"]);
      throw new CliError(EXIT.USAGE, `unknown option "${stray.split("=")[0]}"`, [...(near ? [near] : []), `run "${path.join(" ")} --help" for usage`]);
    }
    if (i < 0) return { cmd, path, rest };
    const name = rest[i]!;
    const sub = Object.hasOwn(subs, name) ? await resolve(subs[name]) : undefined;
    if (!sub) {
      const names = Object.keys(subs).concat(path.length === 1 ? ["help"] : []);
      const near = didYouMean(name, names);
      throw new CliError(EXIT.USAGE, `unknown command "${name}"`, [...(near ? [near] : []), `run "${path.join(" ")} --help" to see the commands`]);
    }
    cmd = sub as AnyCommand;
    path.push(name);
    rest = [...rest.slice(0, i), ...rest.slice(i + 1)];
  }
}

/** The root's own options, shown on its help page. */
const ROOT_OPTIONS = {
  version: { type: "boolean", alias: ["v", "V"], description: "Print the version" },
} as const satisfies ArgsDef;

async function usage(cmd: AnyCommand, path: string[]): Promise<string> {
  const meta = (await resolve(cmd.meta)) ?? {};
  const subs = await resolve(cmd.subCommands);
  let commands: [string, string][] | undefined;
  if (subs) {
    commands = [];
    for (const [name, sub] of Object.entries(subs)) {
      const m = await resolve((await resolve(sub as AnyCommand))?.meta);
      commands.push([name, m?.description ?? ""]);
    }
    if (path.length === 1) commands.push(["help", 'Show the help of a command, e.g. "securechat help chat"']);
  }
  const root = path.length === 1;
  return renderUsage({
    path,
    description: meta.description,
    args: root ? ROOT_OPTIONS : ((await resolve(cmd.args)) ?? {}),
    commands,
    examples: examples(cmd),
    extra: root
      ? [
          ["EXIT CODES", ["0 ok, 1 runtime failure, 2 usage error, 3 authentication failure, 4 host key mismatch, 5 transcript verification failure"]],
          ["FILES", ["$SECURECHAT_HOME/config.toml: the default server and user (see README)", "$SECURECHAT_SERVER: the default server, over config.toml"]],
        ]
      : notes(cmd),
  });
}

/**
 * An error as printed: `securechat: MESSAGE`, then one `hint: …` line per
 * hint. Error text can carry a peer's words (a server's refusal) or whatever
 * was typed on the command line, so every line is escaped (src/text.ts):
 * control, bidi and zero-width characters show as `\x1b`, `\u202e`, long
 * blank runs are capped. On a terminal `columns` wide, each line is wrapped
 * there with its later rows starting `  ↳ ` (src/client/tui/sanitize.ts), so
 * no text can begin a row that reads `hint: …`.
 */
export function errorText(e: CliError, columns?: number): string {
  const lines = [`securechat: ${e.message}`, ...e.hints.map((h) => `hint: ${h}`)];
  return lines.map((l) => `${columns ? terminalBlock(l, columns) : renderSegments(l)}\n`).join("");
}

function printError(e: CliError): void {
  process.stderr.write(errorText(e, process.stderr.isTTY ? process.stderr.columns : undefined));
}

/** Runs the CLI and returns the exit code; never throws. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  try {
    if (argv.length === 1 && VERSION_FLAGS.has(argv[0]!)) {
      process.stdout.write(`securechat ${VERSION}\n`);
      return EXIT.OK;
    }
    // `securechat help [COMMAND…]` is `securechat [COMMAND…] --help`.
    const asked = argv[0] === "help";
    const { cmd, path, rest } = await resolveCommand(asked ? argv.slice(1) : argv);
    if (asked) {
      const stray = rest.find((a) => !HELP.has(a) && a !== "--debug");
      if (stray) throw new CliError(EXIT.USAGE, `"securechat help" takes command names only, not "${stray.split("=")[0]}"`, ['run "securechat help" to see the commands']);
    }
    const end = rest.indexOf("--");
    if (asked || rest.slice(0, end < 0 ? rest.length : end).some((a) => HELP.has(a)) || (path.length === 1 && rest.length === 0)) {
      process.stdout.write(await usage(cmd, path));
      return EXIT.OK;
    }
    if (!cmd.run) {
      throw new CliError(EXIT.USAGE, `"${path.join(" ")}" needs a sub-command`, [`run "${path.join(" ")} --help" to see them`]);
    }
    const args = parseArgv((await resolve(cmd.args)) ?? {}, rest, path);
    await cmd.run({ rawArgs: rest, args, cmd } as unknown as Parameters<NonNullable<AnyCommand["run"]>>[0]);
    return EXIT.OK;
  } catch (e) {
    const err = fromError(e);
    printError(err);
    if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return err.exitCode;
  }
}
