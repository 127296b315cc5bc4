/**
 * The root command and the runner around citty. citty parses leniently
 * (unknown flags are kept, errors print stacks); a security tool must not
 * guess, so this runner resolves the sub-command itself, rejects unknown
 * flags and stray arguments with exit 2, handles --help / --version, and
 * prints every error as one line and hints, with the exit code fromError
 * (src/commands/exit.ts) gives it (docs/DESIGN.md §2, §3).
 */
import { VERSION } from "./version.ts";
import { type ArgsDef, type CommandDef, renderUsage, runCommand } from "citty";
import { CliError, EXIT, fromError } from "./commands/exit.ts";
import { command, examples } from "./commands/define.ts";
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
    chat: lazy(() => import("./commands/chat.ts")),
    transcript: lazy(() => import("./commands/transcript.ts")),
  },
  examples: [
    "securechat serve",
    "securechat register alice --server 127.0.0.1:7447",
    "securechat chat --user alice --room general",
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
    if (stray) throw new CliError(EXIT.USAGE, `unknown option "${stray.split("=")[0]}"`, [`run "${path.join(" ")} --help" for usage`]);
    if (i < 0) return { cmd, path, rest };
    const name = rest[i]!;
    const sub = Object.hasOwn(subs, name) ? await resolve(subs[name]) : undefined;
    if (!sub) {
      throw new CliError(EXIT.USAGE, `unknown command "${name}"`, [`run "${path.join(" ")} --help" to see the commands`]);
    }
    cmd = sub as AnyCommand;
    path.push(name);
    rest = [...rest.slice(0, i), ...rest.slice(i + 1)];
  }
}

const HELP = new Set(["--help", "-h"]);

/** Rejects what citty would silently accept: unknown flags, missing values, extra positionals. */
function checkArgs(argsDef: ArgsDef, rest: string[], path: string[]): void {
  const hint = `run "${path.join(" ")} --help" for usage`;
  const flags = new Map<string, "boolean" | "string">();
  let positionals = 0;
  for (const [name, def] of Object.entries(argsDef)) {
    if (def.type === "positional") {
      positionals++;
      continue;
    }
    const kind = def.type === "boolean" ? "boolean" : "string";
    flags.set(name, kind);
    if (kind === "boolean") flags.set(`no-${name}`, "boolean");
    for (const a of [("alias" in def ? def.alias : undefined) ?? []].flat()) flags.set(a, kind);
  }
  let seen = 0;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === "--") {
      seen += rest.length - i - 1;
      break;
    }
    if (a.startsWith("-") && a !== "-") {
      const [name, value] = a.replace(/^--?/, "").split(/=(.*)/s, 2) as [string, string | undefined];
      const kind = flags.get(name);
      if (!kind) throw new CliError(EXIT.USAGE, `unknown option "${a.split("=")[0]}"`, [hint]);
      if (kind === "boolean" && value !== undefined) throw new CliError(EXIT.USAGE, `option "--${name}" takes no value`, [hint]);
      if (kind === "string" && value === undefined) {
        const next = rest[i + 1];
        if (next === undefined || next.startsWith("--")) throw new CliError(EXIT.USAGE, `option "--${name}" needs a value`, [hint]);
        i++;
      }
      continue;
    }
    seen++;
  }
  // The stray argument is not echoed: it may be a password typed where it does not belong.
  if (seen > positionals) {
    const takes = positionals === 0 ? "no arguments" : positionals === 1 ? "one argument" : `${positionals} arguments`;
    throw new CliError(EXIT.USAGE, `unexpected extra argument: "${path.join(" ")}" takes ${takes} besides options`, [hint]);
  }
}

async function usage(cmd: AnyCommand, path: string[]): Promise<string> {
  const meta = (await resolve(cmd.meta)) ?? {};
  const named = { ...cmd, meta: { ...meta, name: path.join(" "), version: undefined } } as AnyCommand;
  let text = await renderUsage(named);
  const ex = examples(cmd);
  if (ex.length > 0) text += `\n\nEXAMPLES\n\n${ex.map((e) => `  $ ${e}`).join("\n")}`;
  if (path.length === 1) text += `\n\nEXIT CODES\n\n  0 ok, 1 runtime failure, 2 usage error, 3 authentication failure,\n  4 host key mismatch, 5 transcript verification failure`;
  return `${plain() ? text.replace(ANSI, "") : text}\n`;
}

const ANSI = /\u001b\[[0-9;]*m/g;

/** No color unless stdout is a terminal and NO_COLOR is unset (no-color.org). */
function plain(): boolean {
  return !process.stdout.isTTY || (process.env.NO_COLOR ?? "") !== "";
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
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
      process.stdout.write(`securechat ${VERSION}\n`);
      return EXIT.OK;
    }
    const { cmd, path, rest } = await resolveCommand(argv);
    if (rest.some((a) => HELP.has(a)) || (path.length === 1 && rest.length === 0)) {
      process.stdout.write(await usage(cmd, path));
      return EXIT.OK;
    }
    if (!cmd.run) {
      throw new CliError(EXIT.USAGE, `"${path.join(" ")}" needs a sub-command`, [`run "${path.join(" ")} --help" to see them`]);
    }
    checkArgs((await resolve(cmd.args)) ?? {}, rest, path);
    await runCommand(cmd, { rawArgs: rest });
    return EXIT.OK;
  } catch (e) {
    const err = toCliError(e);
    printError(err);
    if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return err.exitCode;
  }
}

function toCliError(e: unknown): CliError {
  // citty's own argument errors (missing positional, bad enum value).
  if (e instanceof Error && e.name === "CLIError") {
    return new CliError(EXIT.USAGE, e.message.replace(ANSI, "").replace(/^./, (c) => c.toLowerCase()), ["run with --help for usage"]);
  }
  return fromError(e);
}
