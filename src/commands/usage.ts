/**
 * Help pages, laid out for an 80-column terminal: every line fits in
 * `WIDTH` columns and none ends in a space. Descriptions wrap under their
 * column; an option whose name is too wide puts its description on the next
 * line; examples wrap at a space outside quotes with a shell line
 * continuation (` \`), so they still paste as one command.
 */
import type { ArgsDef } from "citty";
import { stringWidth } from "../client/tui/width.ts";
import { shortAliases } from "./argv.ts";

export const WIDTH = 80;

/** The widest an option's name column gets before its description moves to the next line. */
const NAME_COLUMN_MAX = 28;

/** Splits `text` into rows of at most `width` columns at spaces; a word wider than a row is cut. */
export function wrap(text: string, width: number): string[] {
  const rows: string[] = [];
  let row = "";
  for (const word of text.split(/ +/).filter((w) => w !== "")) {
    let w = word;
    while (stringWidth(w) > width) {
      if (row !== "") {
        rows.push(row);
        row = "";
      }
      let cut = "";
      for (const ch of w) {
        if (stringWidth(cut + ch) > width) break;
        cut += ch;
      }
      rows.push(cut);
      w = w.slice(cut.length);
    }
    if (row === "") row = w;
    else if (stringWidth(`${row} ${w}`) <= width) row += ` ${w}`;
    else {
      rows.push(row);
      row = w;
    }
  }
  if (row !== "" || rows.length === 0) rows.push(row);
  return rows;
}

/** Rows of a two-column list: names at `indent`, descriptions wrapped in the column after the widest name. */
function columns(entries: [string, string][], indent = 2): string[] {
  const fitting = entries.map(([n]) => stringWidth(n)).filter((w) => w <= NAME_COLUMN_MAX);
  const nameWidth = Math.max(0, ...fitting);
  const at = indent + nameWidth + 2;
  const out: string[] = [];
  for (const [name, description] of entries) {
    const rows = wrap(description, WIDTH - at);
    const head = " ".repeat(indent) + name;
    if (stringWidth(name) > nameWidth) {
      out.push(head);
      for (const r of rows) out.push(" ".repeat(at) + r);
    } else {
      out.push(`${head}${" ".repeat(at - stringWidth(head))}${rows[0]}`);
      for (const r of rows.slice(1)) out.push(" ".repeat(at) + r);
    }
  }
  return out.map((l) => l.trimEnd());
}

/** Splits a shell command into words at spaces outside quotes. */
function shellWords(cmd: string): string[] {
  const words: string[] = [];
  let word = "";
  let quote: string | null = null;
  for (let i = 0; i < cmd.length; i++) {
    const ch = cmd[i]!;
    if (ch === "\\" && quote !== "'" && i + 1 < cmd.length) {
      word += ch + cmd[++i];
      continue;
    }
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === " ") {
      if (word !== "") words.push(word);
      word = "";
      continue;
    }
    word += ch;
  }
  if (word !== "") words.push(word);
  return words;
}

/** An example as `  $ command`, continued on further rows with ` \` when it is too wide. */
export function exampleRows(cmd: string): string[] {
  const first = "  $ ";
  const more = "      ";
  const rows: string[] = [];
  let row = first;
  for (const word of shellWords(cmd)) {
    const start = row === first || row === more;
    if (start || stringWidth(`${row} ${word} \\`) <= WIDTH) {
      row += start ? word : ` ${word}`;
      continue;
    }
    rows.push(`${row} \\`);
    row = more + word;
  }
  rows.push(row);
  // A single word wider than a row (no space to break at) is cut: the page must fit.
  return rows.flatMap((r) => (stringWidth(r) <= WIDTH ? [r] : wrap(r, WIDTH)));
}

export interface UsagePage {
  /** `securechat`, `securechat chat`, `securechat transcript export`. */
  path: string[];
  description?: string;
  args: ArgsDef;
  /** Sub-commands and their descriptions, for a command group. */
  commands?: [string, string][];
  examples: string[];
  /** Extra sections, as [heading, rows]. */
  extra?: [string, string[]][];
}

function optionName(name: string, def: ArgsDef[string]): string {
  const short = shortAliases(def).map((s) => `-${s}, `).join("");
  const value = def.type === "boolean" ? "" : ` ${def.type === "enum" ? (def.valueHint ?? "MODE") : (def.valueHint ?? "VALUE")}`;
  return `${short === "" ? "    " : short}--${name}${value}`;
}

function optionDescription(def: ArgsDef[string]): string {
  let d = def.description ?? "";
  if (def.type === "enum" && def.options) d += ` (${def.options.join(", ")})`;
  if (def.default !== undefined && def.default !== "" && def.type !== "boolean" && !/\bdefault\b/i.test(d)) d += ` (default: ${def.default})`;
  return d;
}

/** The help page of one command, as printed (ends with a newline). */
export function renderUsage(p: UsagePage): string {
  const name = p.path.join(" ");
  const defs = Object.entries(p.args);
  const positionals = defs.filter(([, d]) => d.type === "positional");
  const options = defs.filter(([, d]) => d.type !== "positional");
  const lines: string[] = [];
  if (p.description) lines.push(...wrap(p.description, WIDTH), "");
  const shape = [
    name,
    ...(p.commands ? ["COMMAND"] : []),
    ...positionals.map(([n, d]) => (d.required === false || d.default !== undefined ? `[${n.toUpperCase()}]` : n.toUpperCase())),
    ...(p.commands ? [] : ["[OPTIONS]"]),
  ].join(" ");
  lines.push("USAGE", "", ...wrap(shape, WIDTH - 2).map((r) => `  ${r}`));
  if (positionals.length > 0) {
    lines.push("", "ARGUMENTS", "", ...columns(positionals.map(([n, d]) => [n.toUpperCase(), optionDescription(d)])));
  }
  if (p.commands) lines.push("", "COMMANDS", "", ...columns(p.commands));
  const help: [string, string] = ["-h, --help", "Show this help"];
  lines.push("", "OPTIONS", "", ...columns([...options.map(([n, d]): [string, string] => [optionName(n, d), optionDescription(d)]), help]));
  if (p.examples.length > 0) lines.push("", "EXAMPLES", "", ...p.examples.flatMap(exampleRows));
  for (const [heading, rows] of p.extra ?? []) lines.push("", heading, "", ...rows.flatMap((r) => wrap(r, WIDTH - 2).map((w) => `  ${w}`)));
  return `${lines.map((l) => l.trimEnd()).join("\n")}\n`;
}
