/**
 * `command()` is citty's defineCommand plus the things every securechat
 * command has: examples shown under --help, and the shared arg groups.
 */
import { type ArgsDef, type CommandDef, defineCommand } from "citty";

const examplesOf = new WeakMap<object, string[]>();
const notesOf = new WeakMap<object, [string, string[]][]>();

/** `notes`: extra sections of the help page, as [heading, paragraphs]. */
export function command<const T extends ArgsDef>(def: CommandDef<T> & { examples: string[]; notes?: [string, string[]][] }): CommandDef<T> {
  const { examples, notes, ...rest } = def;
  const cmd = defineCommand(rest);
  examplesOf.set(cmd, examples);
  if (notes) notesOf.set(cmd, notes);
  return cmd;
}

export function examples(cmd: object): string[] {
  return examplesOf.get(cmd) ?? [];
}

export function notes(cmd: object): [string, string[]][] | undefined {
  return notesOf.get(cmd);
}

/** Arg groups shared by several commands; one definition each. */
export const args = {
  debug: {
    debug: { type: "boolean", description: "Print stack traces and protocol detail on errors" },
  },
  server: {
    server: {
      type: "string",
      alias: ["s"],
      description: "Server address, or a cluster's addresses separated by commas, tried in order (default: $SECURECHAT_SERVER, else server in config.toml, else 127.0.0.1:7447)",
      valueHint: "HOST:PORT[,HOST:PORT]",
    },
  },
  passwordStdin: {
    "password-stdin": { type: "boolean", description: "Read the password from the first line of stdin instead of the terminal" },
  },
  acceptNewHost: {
    "accept-new-host": { type: "boolean", description: "Trust an unknown server's host key without asking (scripts)" },
  },
  data: {
    data: { type: "string", alias: ["d"], description: "Server state directory (default: $SECURECHAT_DATA, else the XDG data dir)", valueHint: "DIR" },
  },
} as const satisfies Record<string, ArgsDef>;
