/**
 * The strict command-line parser. citty's own parser keeps unknown flags and
 * guesses; a security tool must not, so every command's arguments are parsed
 * here against its citty ArgsDef, and the command's `run` gets the result:
 *
 * - `--name VALUE`, `--name=VALUE`, `-n VALUE` (a one-letter `alias`),
 *   `--flag`, `--no-flag`; `--` ends the options;
 * - an option marked `repeatable` may be given more than once: its value is
 *   then the list of every one given, in order; any other option given
 *   twice keeps the last;
 * - an unknown option, a missing value, a value given to a boolean, a bad
 *   enum value, a missing or extra positional: a usage error (exit 2) with
 *   a hint, and "did you mean" when a known option is near.
 */
import type { ArgsDef } from "citty";
import { CliError, EXIT } from "./exit.ts";
import { didYouMean } from "../suggest.ts";

type Kind = "boolean" | "string" | "enum";

interface Option {
  name: string;
  kind: Kind;
  choices?: readonly string[];
  repeat?: true;
}

const REPEATABLE = new WeakSet<object>();

/** Marks a string option that may be given more than once (`serve --admin A --admin B`): parsed, it is a string[]. */
export function repeatable<const T extends ArgsDef[string] & { type: "string" }>(def: T): T {
  REPEATABLE.add(def);
  return def;
}

/** A repeatable option's values as parsed (none given: empty). */
export function repeated(v: unknown): string[] {
  return Array.isArray(v) ? (v as string[]) : typeof v === "string" ? [v] : [];
}

/** One-letter aliases of an arg, as written after a single dash. */
export function shortAliases(def: ArgsDef[string]): string[] {
  const alias = "alias" in def ? def.alias : undefined;
  return [alias ?? []].flat().filter((a) => a.length === 1);
}

/** What each spelling of an option means: `--name`, `--no-name`, `-n`; positionals in order. */
export function optionTable(argsDef: ArgsDef): { options: Map<string, Option>; positionals: { name: string; required: boolean }[] } {
  const options = new Map<string, Option>();
  const positionals: { name: string; required: boolean }[] = [];
  for (const [name, def] of Object.entries(argsDef)) {
    if (def.type === "positional") {
      positionals.push({ name, required: def.required !== false && def.default === undefined });
      continue;
    }
    const kind: Kind = def.type === "boolean" ? "boolean" : def.type === "enum" ? "enum" : "string";
    const option: Option = { name, kind, ...(def.type === "enum" ? { choices: def.options ?? [] } : {}), ...(REPEATABLE.has(def) ? { repeat: true as const } : {}) };
    options.set(`--${name}`, option);
    if (kind === "boolean") options.set(`--no-${name}`, option);
    for (const a of [("alias" in def ? def.alias : undefined) ?? []].flat()) options.set(a.length === 1 ? `-${a}` : `--${a}`, option);
  }
  return { options, positionals };
}

export type ParsedArgs = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `rest` (the arguments after the command's name) for a command
 * whose help is `securechat PATH --help`. Values not given take the arg's
 * `default`; booleans not given stay undefined.
 */
export function parseArgv(argsDef: ArgsDef, rest: string[], path: string[]): ParsedArgs {
  const hint = `run "${path.join(" ")} --help" for usage`;
  const { options, positionals } = optionTable(argsDef);
  const out: ParsedArgs = { _: [] };
  const given: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === "--") {
      given.push(...rest.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      given.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const spelled = eq < 0 ? a : a.slice(0, eq);
    const inline = eq < 0 ? undefined : a.slice(eq + 1);
    const option = options.get(spelled);
    if (!option) {
      const near = didYouMean(spelled, [...options.keys()].filter((k) => k.startsWith("--")));
      throw new CliError(EXIT.USAGE, `unknown option "${spelled}"`, [...(near ? [near] : []), hint]);
    }
    const shown = `--${option.name}`;
    if (option.kind === "boolean") {
      if (inline !== undefined) throw new CliError(EXIT.USAGE, `option "${shown}" takes no value`, [hint]);
      out[option.name] = !spelled.startsWith("--no-");
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = rest[i + 1];
      // A value may start with a dash ("-5"), but not look like an option.
      if (next === undefined || next.startsWith("--") || /^-[A-Za-z]/.test(next)) throw new CliError(EXIT.USAGE, `option "${shown}" needs a value`, [hint]);
      value = next;
      i++;
    }
    if (option.choices && !option.choices.includes(value)) {
      throw new CliError(EXIT.USAGE, `option "${shown}" must be one of ${option.choices.join(", ")}, not "${value}"`, [hint]);
    }
    out[option.name] = option.repeat ? [...repeated(out[option.name]), value] : value;
  }
  // A stray argument is not echoed: it may be a password typed where it does not belong.
  if (given.length > positionals.length) {
    const n = positionals.length;
    const takes = n === 0 ? "no arguments" : n === 1 ? "one argument" : `${n} arguments`;
    throw new CliError(EXIT.USAGE, `unexpected extra argument: "${path.join(" ")}" takes ${takes} besides options`, [hint]);
  }
  out._ = given;
  positionals.forEach((p, k) => {
    if (given[k] !== undefined) out[p.name] = given[k];
    else if (p.required) throw new CliError(EXIT.USAGE, `missing required positional argument: ${p.name.toUpperCase()}`, [hint]);
  });
  for (const [name, def] of Object.entries(argsDef)) {
    if (out[name] === undefined && def.default !== undefined) out[name] = def.default;
  }
  return out;
}
