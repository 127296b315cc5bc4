/**
 * Help a person can read on an 80-column terminal, and usage errors that
 * say what was probably meant: every help page (every command and
 * sub-command, through --help and `securechat help`) fits 80 columns with
 * no trailing blanks; "did you mean" for commands and options; short flags.
 */
import { describe, expect, test } from "bun:test";
import type { ArgsDef, CommandDef } from "citty";
import { root } from "../../src/cli.ts";
import { optionTable, parseArgv } from "../../src/commands/argv.ts";
import { WIDTH, exampleRows, renderUsage, wrap } from "../../src/commands/usage.ts";
import { didYouMean, editDistance } from "../../src/suggest.ts";
import { stringWidth } from "../../src/client/tui/width.ts";
import { runCli as run } from "../cli.ts";

type AnyCommand = CommandDef<ArgsDef>;
const resolve = async <T,>(v: unknown): Promise<T> => (typeof v === "function" ? await (v as () => Promise<T>)() : await (v as Promise<T>));

/** Every command path below the root (`["chat"]`, `["transcript", "export"]`, …), with its args. */
async function allCommands(): Promise<{ path: string[]; args: ArgsDef; group: boolean }[]> {
  const out: { path: string[]; args: ArgsDef; group: boolean }[] = [];
  const visit = async (cmd: AnyCommand, path: string[]) => {
    const subs = await resolve<Record<string, unknown> | undefined>(cmd.subCommands);
    out.push({ path, args: (await resolve<ArgsDef | undefined>(cmd.args)) ?? {}, group: subs !== undefined });
    for (const [name, sub] of Object.entries(subs ?? {})) await visit(await resolve<AnyCommand>(sub), [...path, name]);
  };
  await visit(root as AnyCommand, []);
  return out;
}

/** The lines of a page that are too wide or end in a blank, with their number. */
function badLines(page: string): string[] {
  return page
    .split("\n")
    .map((l, i) => [i + 1, l] as const)
    .filter(([, l]) => stringWidth(l) > WIDTH || /\s$/.test(l))
    .map(([i, l]) => `${i} (${stringWidth(l)} columns): ${JSON.stringify(l)}`);
}

describe("help pages fit 80 columns", () => {
  test("every command's and sub-command's page, by --help and by `securechat help`, has no line over 80 columns and none ending in a blank", async () => {
    const commands = await allCommands();
    expect(commands.map((c) => c.path.join(" "))).toEqual(expect.arrayContaining(["", "serve", "register", "chat", "transcript", "transcript export", "transcript verify", "transcript follow", "transcript keygen"]));
    for (const { path, args } of commands) {
      const viaFlag = await run(...path, "--help");
      const viaHelp = await run("help", ...path);
      const name = `securechat ${path.join(" ")}`.trim();
      expect(viaFlag.code, name).toBe(0);
      expect(viaHelp).toEqual(viaFlag);
      expect(badLines(viaFlag.stdout), name).toEqual([]);
      expect(viaFlag.stdout, name).not.toContain("\n\n\n");
      // Every option is on the page, with its short form where it has one.
      for (const [flag, def] of Object.entries(args)) {
        if (def.type === "positional") continue;
        expect(viaFlag.stdout, `${name} --${flag}`).toContain(`--${flag}`);
        for (const s of [("alias" in def ? def.alias : undefined) ?? []].flat()) expect(viaFlag.stdout, `${name} -${s}`).toMatch(new RegExp(`-${s}, --${flag}\\b`));
      }
    }
  });

  test("the layout wraps what is too long rather than relying on short text: descriptions, option names, examples", () => {
    const long = "a very long description that goes on and on ".repeat(6);
    const page = renderUsage({
      path: ["securechat", "demo"],
      description: long,
      args: {
        short: { type: "string", alias: ["x"], description: long, valueHint: "V" },
        "an-option-with-a-name-far-wider-than-the-column": { type: "string", description: long, valueHint: "SOMETHING_LONG" },
        mode: { type: "enum", options: ["one", "two", "three"], description: long, default: "one" },
        word: { type: "string", description: `unbreakable:${"x".repeat(120)}` },
      },
      commands: [["sub", long]],
      examples: [`securechat demo ${"--short 'quoted words stay together' ".repeat(4)}`, `echo ${"y".repeat(100)}`],
      extra: [["NOTES", [long]]],
    });
    expect(badLines(page)).toEqual([]);
    expect(page).toContain("--an-option-with-a-name-far-wider-than-the-column SOMETHING_LONG\n");
    // A continued example ends each row but the last with " \" and never splits a quoted string.
    const rows = exampleRows(`securechat demo ${"--short 'quoted words stay together' ".repeat(4)}`);
    expect(rows.length).toBeGreaterThan(1);
    expect(rows.slice(0, -1).every((r) => r.endsWith(" \\"))).toBe(true);
    expect(rows.join("\n").match(/'quoted words stay together'/g)).toHaveLength(4);
    expect(wrap("", 10)).toEqual([""]);
    expect(wrap("abc def ghi", 7)).toEqual(["abc def", "ghi"]);
  });
});

describe("securechat help", () => {
  test("help, help COMMAND and help GROUP SUB print those pages", async () => {
    expect((await run("help")).stdout).toBe((await run("--help")).stdout);
    const chat = await run("help", "chat");
    expect(chat.code).toBe(0);
    expect(chat.stdout).toContain("securechat chat [OPTIONS]");
    expect((await run("help", "transcript", "export")).stdout).toContain("securechat transcript export [OPTIONS]");
    expect((await run("--help")).stdout).toMatch(/^ {2}help +Show the help of a command/m);
  });

  test("help for an unknown command is a usage error with a suggestion", async () => {
    const r = await run("help", "caht");
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('securechat: unknown command "caht"\nhint: did you mean "chat"?\nhint: run "securechat --help" to see the commands\n');
  });
});

describe("did you mean", () => {
  test("edit distance counts a swap of neighbours as one edit", () => {
    expect(editDistance("chat", "chat")).toBe(0);
    expect(editDistance("caht", "chat")).toBe(1);
    expect(editDistance("regster", "register")).toBe(1);
    expect(editDistance("", "abc")).toBe(3);
    expect(didYouMean("frobnicate", ["serve", "chat", "register"])).toBeNull();
    expect(didYouMean("logn", ["login", "logout"])).toBe('did you mean "login"?');
  });

  test.each([
    [["regster", "alice"], 'unknown command "regster"', 'did you mean "register"?'],
    [["transcript", "exprot"], 'unknown command "exprot"', 'did you mean "export"?'],
    [["chat", "--sever", "h:1"], 'unknown option "--sever"', 'did you mean "--server"?'],
    [["login", "alice", "--password-stdn"], 'unknown option "--password-stdn"', 'did you mean "--password-stdin"?'],
    [["chat", "--acept-new-host"], 'unknown option "--acept-new-host"', 'did you mean "--accept-new-host"?'],
    [["--verison"], 'unknown option "--verison"', 'did you mean "--version"?'],
  ])("%p: one line, the suggestion, then how to get help", async (argv, message, hint) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    const lines = r.stderr.split("\n");
    expect(lines[0]).toBe(`securechat: ${message}`);
    expect(lines[1]).toBe(`hint: ${hint}`);
    expect(lines[2]).toStartWith("hint: run ");
  });

  test("nothing near: no suggestion, only the help hint", async () => {
    const r = await run("frobnicate");
    expect(r.stderr).toBe('securechat: unknown command "frobnicate"\nhint: run "securechat --help" to see the commands\n');
  });
});

describe("short flags", () => {
  test("no command has two options with one short flag, and none takes -h or -v", async () => {
    for (const { path, args } of await allCommands()) {
      const shorts = Object.values(args).flatMap((d) => [("alias" in d ? d.alias : undefined) ?? []].flat().filter((a) => a.length === 1));
      expect(new Set(shorts).size, path.join(" ")).toBe(shorts.length);
      expect(shorts.filter((s) => s === "h" || s === "v" || s === "V"), path.join(" ")).toEqual([]);
    }
  });

  test("-s, -u, -r and -d mean --server, --user, --room and --data", async () => {
    const chat = (await allCommands()).find((c) => c.path.join(" ") === "chat")!.args;
    const parsed = parseArgv(chat, ["-s", "h:1", "-u", "alice", "-r", "ops"], ["securechat", "chat"]);
    expect([parsed.server, parsed.user, parsed.room]).toEqual(["h:1", "alice", "ops"]);
    const exp = (await allCommands()).find((c) => c.path.join(" ") === "transcript export")!.args;
    expect(parseArgv(exp, ["-d", "/srv/data"], ["securechat", "transcript", "export"]).data).toBe("/srv/data");
    // Through the runner: -s reaches the server address check.
    const r = await run("logout", "alice", "-s", "host:0");
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith('securechat: "host:0" is not a server address\n');
  });

  test("-V and -v print the version; a single dash does not make a long option", async () => {
    expect((await run("-V")).stdout).toBe((await run("--version")).stdout);
    const r = await run("logout", "alice", "-server", "h:1");
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe('securechat: unknown option "-server"');
    expect(r.stderr).toContain('hint: did you mean "--server"?');
  });

  test("--name=value, --no-flag, -- and enum values", () => {
    const args: ArgsDef = {
      file: { type: "positional", required: false, description: "" },
      level: { type: "enum", options: ["a", "b"], description: "" },
      quiet: { type: "boolean", alias: ["q"], description: "" },
    };
    const path = ["securechat", "x"];
    expect(parseArgv(args, ["--level=b", "--no-quiet"], path)).toMatchObject({ level: "b", quiet: false });
    expect(parseArgv(args, ["-q", "--", "--level"], path)).toMatchObject({ quiet: true, file: "--level" });
    expect(() => parseArgv(args, ["--level", "c"], path)).toThrow('option "--level" must be one of a, b, not "c"');
    expect([...optionTable(args).options.keys()].sort()).toEqual(["--level", "--no-quiet", "--quiet", "-q"]);
  });

  test("a repeatable option keeps every value given, in order (serve --admin A --admin B); any other keeps the last", async () => {
    const serve = (await allCommands()).find((c) => c.path.join(" ") === "serve")!.args;
    const path = ["securechat", "serve"];
    expect(parseArgv(serve, ["--admin", "root", "--admin=ops", "--port", "1", "--port", "2"], path)).toMatchObject({ admin: ["root", "ops"], port: "2" });
    expect(parseArgv(serve, ["--admin", "root"], path).admin).toEqual(["root"]);
    expect(parseArgv(serve, [], path).admin).toBeUndefined();
  });
});
