/**
 * `transcript export`, `follow` and `keygen` as an auditor uses them:
 * entries as stored with their time in ISO 8601 UTC added (or exactly as
 * stored, `--stored`), filtered by time/room/user, sealed bodies
 * opened only with the auditor key, output that stops (exit 5) at the
 * first problem, a follower that survives rotation and never prints half
 * a line, and auditor key files that are private and never overwritten.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { EXIT } from "../../src/commands/exit.ts";
import { type Entry, entryLine, openBody, unwrapFileKey } from "../../src/transcript/format.ts";
import { matches, parseTime, exportTranscript } from "../../src/transcript/export.ts";
import { fingerprint } from "../../src/fingerprint.ts";
import { AUDITOR_PUB_HEADER, loadAuditorIdentity, parseAuditorPublic } from "../../src/transcript/keys.ts";
import { type Built, Chain, auditorKeyPair, buildEntries, buildTranscript, fileName, hostKeyPair, linesOf, runCli, splitFiles, tempDir, writeFiles } from "./helpers.ts";

const REPO = join(import.meta.dir, "..", "..");

/** A data dir whose transcript/ holds a built transcript. */
function dataDir(b: Omit<Parameters<typeof buildTranscript>[0], never>): { data: string; built: Built } {
  const data = tempDir("data");
  const built = buildTranscript(b, join(data, "transcript"));
  return { data, built };
}

const plainT = dataDir({ entries: 90, files: 3, checkpointEvery: 8 });
const allLines = plainT.built.files.flat();

/** The entries of exported lines; each line's `time` must be its `ts` in ISO 8601 UTC, and is taken off. */
function parsed(stdout: string): Entry[] {
  return stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const { time, ...e } = JSON.parse(l) as Entry & { time?: unknown };
      expect(time).toBe(new Date(e.ts).toISOString());
      return e as Entry;
    });
}

/** A stored line as export writes it: the same members and spelling, with `"time":"…"` among them in canonical order (§3.2). */
function exported(stored: string): string {
  const e = JSON.parse(stored) as Entry;
  const line = entryLine({ ...e, time: new Date(e.ts).toISOString() } as Entry).slice(0, -1);
  expect(line.replace(/"time":"[^"]*",/, "")).toBe(stored);
  return line;
}

describe("export", () => {
  test("without filters: every line as stored with its time in ISO 8601 UTC, nothing on stderr but the pin note", async () => {
    const r = await runCli("transcript", "export", "--data", plainT.data);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(allLines.map((l) => `${exported(l)}\n`).join(""));
    expect(r.stdout.split("\n")[0]).toContain(`"time":"${new Date(plainT.built.entries[0]!.ts).toISOString()}"`);
    expect(r.stderr).toBe(`note: signatures were checked against the key the transcript names (${fingerprint(plainT.built.host.publicKey)}); pass --host-key to pin it\n`);
  });

  test("--stored: every line exactly as stored", async () => {
    const r = await runCli("transcript", "export", "--data", plainT.data, "--stored");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(allLines.map((l) => `${l}\n`).join(""));
  });

  test("the default data dir is $SECURECHAT_DATA/transcript, like serve's", async () => {
    const saved = process.env.SECURECHAT_DATA;
    process.env.SECURECHAT_DATA = plainT.data;
    try {
      const r = await runCli("transcript", "export", "--host-key", toBase64(plainT.built.host.publicKey));
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
      expect(parsed(r.stdout)).toHaveLength(90);
    } finally {
      process.env.SECURECHAT_DATA = saved;
    }
  });

  const entries = plainT.built.entries;
  const t = (k: number) => entries[k]!.ts;
  const filters: [string, string[], (e: Entry) => boolean][] = [
    ["--since (epoch ms, inclusive)", ["--since", String(t(30))], (e) => e.ts >= t(30)],
    ["--until (epoch ms, exclusive)", ["--until", String(t(30))], (e) => e.ts < t(30)],
    ["--since/--until as ISO 8601", ["--since", new Date(t(10)).toISOString(), "--until", new Date(t(20)).toISOString().replace(".000Z", "Z")], (e) => e.ts >= t(10) && e.ts < t(20)],
    ["--since with an offset", ["--since", isoWithOffset(t(50))], (e) => e.ts >= t(50)],
    ["--room", ["--room", "ops"], (e) => ["join", "leave", "message"].includes(e.type) && e.room === "ops"],
    ["--user (user, from or to)", ["--user", "bob"], (e) => e.user === "bob" || e.from === "bob" || e.to === "bob"],
    ["--room and --user together", ["--room", "general", "--user", "alice"], (e) => ["join", "leave", "message"].includes(e.type) && e.room === "general" && (e.user === "alice" || e.from === "alice")],
    ["a day that holds nothing", ["--since", "2027-01-01"], () => false],
  ];
  for (const [label, flags, keep] of filters) {
    test(`filter: ${label}`, async () => {
      const r = await runCli("transcript", "export", "--data", plainT.data, ...flags);
      expect(r.code).toBe(0);
      const want = entries.filter(keep);
      expect(parsed(r.stdout)).toEqual(want);
      if (label !== "a day that holds nothing") expect(want.length).toBeGreaterThan(0);
    });
  }

  test("the bob filter includes DMs to bob and his session entries", async () => {
    const got = parsed((await runCli("transcript", "export", "--data", plainT.data, "--user", "bob")).stdout);
    expect(new Set(got.map((e) => e.type))).toEqual(new Set(["session_open", "join", "message", "direct", "leave", "session_close"]));
  });

  test("bad times are usage errors", async () => {
    for (const bad of ["tomorrow", "2026-02-30", "2026-11-22T25:00", "24:00", "12:60", "-5", "2x", "3 days"]) {
      const r = await runCli("transcript", "export", "--data", plainT.data, "--since", bad);
      expect(r.code).toBe(EXIT.USAGE);
      expect(r.stderr).toStartWith("securechat: --since: ");
      expect(r.stdout).toBe("");
    }
  });

  test("parseTime: ISO 8601 in UTC unless an offset is given, or epoch ms", () => {
    expect(parseTime("2026-11-22")).toBe(Date.UTC(2026, 10, 22));
    expect(parseTime("2026-11-22T10:30")).toBe(Date.UTC(2026, 10, 22, 10, 30));
    expect(parseTime("2026-11-22 10:30:05.5Z")).toBe(Date.UTC(2026, 10, 22, 10, 30, 5, 500));
    expect(parseTime("2026-11-22T10:30:00+02:00")).toBe(Date.UTC(2026, 10, 22, 8, 30));
    expect(parseTime("1795338001000")).toBe(1795338001000);
    expect(parseTime("2028-02-29")).toBe(Date.UTC(2028, 1, 29));
    expect(() => parseTime("2026-02-29")).toThrow(/is not a time: use 2026-11-22/);
  });

  describe("parseTime: times relative to now (injected, never the wall clock)", () => {
    const NOW = Date.UTC(2026, 10, 22, 14, 30, 15, 250);
    const cases: [string, number][] = [
      ["now", NOW],
      ["today", Date.UTC(2026, 10, 22)],
      ["yesterday", Date.UTC(2026, 10, 21)],
      ["08:00", Date.UTC(2026, 10, 22, 8, 0)],
      ["08:00:30", Date.UTC(2026, 10, 22, 8, 0, 30)],
      ["23:59", Date.UTC(2026, 10, 22, 23, 59)],
      ["08:00Z", Date.UTC(2026, 10, 22, 8, 0)],
      ["08:00+02:00", Date.UTC(2026, 10, 22, 6, 0)],
      // At 14:30 UTC it is already the 23rd at +10:00: "today" there.
      ["08:00+10:00", Date.UTC(2026, 10, 22, 22, 0)],
      ["08:00-05:00", Date.UTC(2026, 10, 22, 13, 0)],
      ["90s", NOW - 90_000],
      ["30m", NOW - 30 * 60_000],
      ["2h", NOW - 2 * 3_600_000],
      ["7d", NOW - 7 * 86_400_000],
      ["2w", NOW - 14 * 86_400_000],
      [" 2h ", NOW - 2 * 3_600_000],
      ["2026-11-22", Date.UTC(2026, 10, 22)],
      ["1795338001000", 1795338001000],
    ];
    for (const [input, want] of cases) {
      test(`"${input}" is ${new Date(want).toISOString()}`, () => expect(parseTime(input, NOW)).toBe(want));
    }

    test("just after midnight UTC, today and yesterday are the new day's", () => {
      const t = Date.UTC(2026, 0, 1, 0, 0, 0, 1);
      expect([parseTime("today", t), parseTime("yesterday", t), parseTime("00:00", t)]).toEqual([Date.UTC(2026, 0, 1), Date.UTC(2025, 11, 31), Date.UTC(2026, 0, 1)]);
    });

    test("nonsense is refused, saying which forms there are", () => {
      for (const bad of ["tomorrow", "24:00", "12:60", "08:00+24:00", "8:00", "2y", "-2h", "2h ago", ""]) {
        expect(() => parseTime(bad, NOW)).toThrow(/is not a time: use 2026-11-22, 2026-11-22T10:30 \(UTC unless an offset is given\), 08:00 \(today, UTC\), 2h or 7d \(ago\), today, yesterday, or epoch ms/);
      }
    });
  });

  test("matches: a room filter drops entries without a room", () => {
    const e = { seq: 1, ts: 5, type: "direct", prev: "", hash: "", from: "a", to: "b", dm_seq: 1, text: "x" } as Entry;
    expect(matches(e, { room: "general" })).toBe(false);
    expect(matches(e, { user: "b" })).toBe(true);
    expect(matches(e, { since: 5, until: 6 })).toBe(true);
    expect(matches(e, { until: 5 })).toBe(false);
  });

  test("matches: a user filter keeps what an administrator did to the user, and what the user did as one", () => {
    const e = { seq: 1, ts: 5, type: "admin_action", prev: "", hash: "", user: "root", session: "", action: "lock", target: "bob" } as Entry;
    expect([matches(e, { user: "bob" }), matches(e, { user: "root" }), matches(e, { user: "carol" })]).toEqual([true, true, false]);
    // A session_revoked's target is a session id, not a user.
    const r = { seq: 2, ts: 5, type: "session_revoked", prev: "", hash: "", user: "alice", session: "", target: "abcdef012345" } as Entry;
    expect(matches(r, { user: "abcdef012345" })).toBe(false);
  });

  test("matches: a room_change is of its room, and of both who did it and the user acted on (PROTOCOL.md §7.9)", () => {
    const e = { seq: 1, ts: 5, type: "room_change", prev: "", hash: "", room: "ops", user: "alice", session: "", owner: "alice", action: "ban", target: "carol" } as Entry;
    expect(matches(e, { room: "ops" })).toBe(true);
    expect(matches(e, { room: "general" })).toBe(false);
    expect(matches(e, { user: "alice" })).toBe(true);
    expect(matches(e, { user: "carol" })).toBe(true);
    expect(matches(e, { user: "bob" })).toBe(false);
  });

  test("a tampered source: the verified lines before it, then FAIL on stderr and exit 5", async () => {
    const data = tempDir("data");
    const files = plainT.built.files.map((f) => [...f]);
    const bad = JSON.parse(files[1]![7]!) as Entry;
    bad.ts += 1;
    files[1]![7] = entryLine(bad).slice(0, -1);
    writeFiles(join(data, "transcript"), plainT.built.names, files);
    const r = await runCli("transcript", "export", "--data", data);
    expect(r.code).toBe(EXIT.TRANSCRIPT);
    expect(r.stdout).toBe(allLines.slice(0, 30 + 7).map((l) => `${exported(l)}\n`).join(""));
    expect(r.stderr).toStartWith(`securechat: FAIL: ${plainT.built.names[1]}:8: entry edited (its hash does not match its content)\n`);
  });

  test("--help says output may stop part-way and exit 5", async () => {
    const r = await runCli("transcript", "export", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("exit 5, after the lines before it");
    expect(r.stdout).toContain("holds only the part before the problem");
    expect(r.stdout).toContain("EXAMPLES");
  });

  test("the library writes to any sink and reports what it verified", async () => {
    const out: string[] = [];
    const s = await exportTranscript(join(plainT.data, "transcript"), { room: "ops", hostKey: plainT.built.host.publicKey }, { write: (l) => void out.push(l) });
    expect(s).toMatchObject({ entries: 90, lastCheckpoint: 90, unsealed: 0, pinned: true, leftSealed: 0 });
    expect(s.written).toBe(out.length);
  });

  test("stdout closed early (| head -1): exit 0, no error", async () => {
    const big = dataDir({ entries: 3000, files: 2, checkpointEvery: 500 });
    const p = Bun.spawn(["bash", "-c", `"${process.execPath}" src/main.ts transcript export --data "${big.data}" | head -1 >/dev/null; echo "\${PIPESTATUS[0]}"`], { cwd: REPO, stdout: "pipe", stderr: "pipe", env: { ...process.env } });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    await p.exited;
    expect({ out, err }).toEqual({ out: "0\n", err: "" });
  }, 20_000);
});

function isoWithOffset(ms: number): string {
  // The same instant written at +05:30.
  const local = new Date(ms + 5.5 * 3600_000).toISOString().slice(0, 19);
  return `${local}+05:30`;
}

describe("export of sealed bodies", () => {
  const auditor = auditorKeyPair();
  const sealedT = dataDir({ entries: 50, files: 2, checkpointEvery: 6, seal: auditor.publicKey });
  const keyFile = join(tempDir("auditor"), "auditor.key");
  writeFileSync(keyFile, `securechat-auditor-key-v1 ${toBase64(auditor.secretKey)}\n`, { mode: 0o600 });

  test("without --identity: sealed entries as stored", async () => {
    const r = await runCli("transcript", "export", "--data", sealedT.data, "--user", "alice");
    expect(r.code).toBe(0);
    const got = parsed(r.stdout);
    const bodies = got.filter((e) => e.type === "message" || e.type === "direct");
    expect(bodies.length).toBeGreaterThan(3);
    for (const e of bodies) {
      expect(e.text).toBeUndefined();
      expect(typeof e.sealed).toBe("string");
    }
  });

  test("with --identity: text, decrypted:true, no sealed/key_seq; other entries untouched", async () => {
    const r = await runCli("transcript", "export", "--data", sealedT.data, "--identity", keyFile);
    expect(r.code).toBe(0);
    const got = parsed(r.stdout);
    expect(got).toHaveLength(50);
    for (const [k, e] of got.entries()) {
      const orig = sealedT.built.entries[k]!;
      if (orig.sealed !== undefined) {
        const { sealed: _s, key_seq: _k, ...rest } = orig;
        expect(e).toEqual({ ...rest, text: sealedT.built.plain.get(orig.seq)!, decrypted: true } as Entry);
      } else expect(e).toEqual(orig);
      expect((JSON.parse(r.stdout.split("\n")[k]!) as { time: string }).time).toBe(new Date(orig.ts).toISOString());
    }
    expect(got.some((e) => typeof e.text === "string" && e.text.includes("✓"))).toBe(true);
  });

  test("an identity that is not the auditor's leaves bodies sealed and says so", async () => {
    const other = join(tempDir("auditor"), "other.key");
    writeFileSync(other, `securechat-auditor-key-v1 ${toBase64(auditorKeyPair(5).secretKey)}\n`, { mode: 0o600 });
    const r = await runCli("transcript", "export", "--data", sealedT.data, "--identity", other);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('"decrypted"');
    expect(r.stderr).toMatch(/note: \d+ sealed entries are sealed to another auditor key and were written as stored/);
  });

  test("a public key file given as --identity is a usage error", async () => {
    const pub = join(tempDir("auditor"), "auditor.pub");
    writeFileSync(pub, `${AUDITOR_PUB_HEADER} ${toBase64(auditor.publicKey)}\n`);
    const r = await runCli("transcript", "export", "--data", sealedT.data, "--identity", pub);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toContain("holds the public key");
  });
});

describe("unsafe characters in exported lines", () => {
  /** Bidi override, isolate, zero-width, BOM, line separator, C1, DEL: all allowed on the wire, all raw in JSON.stringify's output. */
  const EVIL = "look \u202eevil\u202c pay\u200bpal \u2066x\u2069\ufeff\u2028\u0085\u007f";
  const isRaw = (s: string) => /[\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/.test(s);

  function evilTranscript(seal?: Uint8Array): { data: string; entries: Entry[]; plain: Map<number, string> } {
    const c = new Chain(hostKeyPair(), seal ?? null);
    c.add("server_start", { host_key: toBase64(c.host.publicKey), version: "test" });
    if (seal) c.sealKey();
    c.add("message", { room: "general", room_seq: 1, from: "mallory", text: EVIL });
    c.add("direct", { dm_seq: 1, from: "mallory", to: "alice", text: `${EVIL} (dm)` });
    c.checkpoint();
    const data = tempDir("data");
    writeFiles(join(data, "transcript"), [fileName(c.entries[0]!.ts, 1)], [linesOf(c.entries)]);
    return { data, entries: c.entries, plain: c.plain };
  }

  test("are \\u escapes in export's output; the values, and so the hashes, are the stored ones", async () => {
    const t = evilTranscript();
    expect(isRaw(readFileSync(join(t.data, "transcript", fileName(t.entries[0]!.ts, 1)), "utf8"))).toBe(true); // the source holds them raw
    const r = await runCli("transcript", "export", "--data", t.data);
    expect(r.code).toBe(0);
    expect(isRaw(r.stdout)).toBe(false);
    expect(r.stdout).toMatch(/^[\x20-\x7e\n]*$/);
    expect(r.stdout).toContain("look \\u202eevil\\u202c pay\\u200bpal");
    expect(parsed(r.stdout)).toEqual(t.entries);
    // Lines without such characters are still as stored (with their time).
    const out = r.stdout.split("\n");
    const stored = linesOf(t.entries);
    expect([out[0], out[3]]).toEqual([exported(stored[0]!), exported(stored[3]!)]);
  });

  test("and in opened sealed bodies (--identity)", async () => {
    const auditor = auditorKeyPair(7);
    const t = evilTranscript(auditor.publicKey);
    const keyFile = join(tempDir("auditor"), "auditor.key");
    writeFileSync(keyFile, `securechat-auditor-key-v1 ${toBase64(auditor.secretKey)}\n`, { mode: 0o600 });
    const r = await runCli("transcript", "export", "--data", t.data, "--identity", keyFile);
    expect(r.code).toBe(0);
    expect(isRaw(r.stdout)).toBe(false);
    const texts = parsed(r.stdout).filter((e) => e.decrypted === true).map((e) => e.text);
    expect(texts).toEqual([EVIL, `${EVIL} (dm)`]);
  });
});

describe("keygen and auditor key files", () => {
  test("writes a 0600 secret, prints the public line, refuses to overwrite", async () => {
    const out = join(tempDir("keygen"), "auditor.key");
    const r = await runCli("transcript", "keygen", "--out", out);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^securechat-auditor-pub-v1 [A-Za-z0-9+/]{43}=\n$/);
    expect(r.stderr).toMatch(/fingerprint: SHA256:/);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readFileSync(out, "utf8")).toMatch(/^securechat-auditor-key-v1 [A-Za-z0-9+/]{43}=\n$/);
    const before = readFileSync(out, "utf8");
    const again = await runCli("transcript", "keygen", "--out", out);
    expect(again.code).toBe(EXIT.FAILURE);
    expect(again.stderr).toContain("already exists; not overwriting it");
    expect(readFileSync(out, "utf8")).toBe(before);

    // The pair works: a file key wrapped to the printed public key opens with the file.
    const pub = parseAuditorPublic(r.stdout);
    const secret = loadAuditorIdentity(out);
    const { wrapFileKey, sealBody } = await import("../../src/transcript/format.ts");
    const { fileKey, fields } = wrapFileKey(pub);
    const k = unwrapFileKey(secret, { seq: 1, ts: 0, type: "seal_key", prev: "", hash: "", ...fields } as Entry);
    expect(openBody(k, 7, sealBody(fileKey, 7, "hi"))).toBe("hi");
  });

  test("parseAuditorPublic accepts the line, bare base64, or a file holding either; rejects secrets and junk", () => {
    const pair = auditorKeyPair(3);
    const line = `${AUDITOR_PUB_HEADER} ${toBase64(pair.publicKey)}`;
    const dir = tempDir("pub");
    writeFileSync(join(dir, "a.pub"), `${line}\n`);
    writeFileSync(join(dir, "b.pub"), `${toBase64(pair.publicKey)}\n`);
    for (const s of [line, toBase64(pair.publicKey), join(dir, "a.pub"), join(dir, "b.pub"), `  ${line}\n`]) expect(parseAuditorPublic(s)).toEqual(pair.publicKey);
    expect(() => parseAuditorPublic(`securechat-auditor-key-v1 ${toBase64(pair.secretKey)}`)).toThrow(/secret key/);
    expect(() => parseAuditorPublic("AAAA")).toThrow(/expected/);
    expect(() => parseAuditorPublic(toBase64(new Uint8Array(32)))).toThrow(/not a usable X25519 public key/);
  });

  test("serve-side parsing and the keygen output agree", async () => {
    const out = join(tempDir("keygen"), "k");
    const r = await runCli("transcript", "keygen", "--out", out);
    expect(toBase64(parseAuditorPublic(r.stdout.trim()))).toBe(r.stdout.trim().split(" ")[1]!);
    expect(existsSync(out)).toBe(true);
  });
});

describe("follow (a subprocess, like tail -f)", () => {
  type Proc = ReturnType<typeof Bun.spawn<"ignore", "pipe", "pipe">>;
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs) {
      if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
      await p.exited;
    }
  });

  function spawnFollow(data: string, ...flags: string[]): { proc: Proc; lines: string[]; errLines: string[]; stderr: Promise<string> } {
    const proc = Bun.spawn([process.execPath, "src/main.ts", "transcript", "follow", "--data", data, ...flags], {
      cwd: REPO,
      env: { ...process.env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    procs.push(proc);
    const lines: string[] = [];
    const errLines: string[] = [];
    void collect(proc.stdout, lines);
    const stderr = collect(proc.stderr, errLines).then(() => errLines.map((l) => `${l}\n`).join(""));
    return { proc, lines, errLines, stderr };
  }

  async function collect(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
  }

  async function waitFor(lines: string[], n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (lines.length < n) {
      if (Date.now() > deadline) throw new Error(`test: follow printed ${lines.length} lines within ${timeoutMs} ms, expected ${n}`);
      await Bun.sleep(20);
    }
  }

  test("prints what is there, new lines, waits on a partial line, follows rotation, fails (exit 5) on tampering", async () => {
    const data = tempDir("follow");
    const dir = join(data, "transcript");
    const { entries, starts } = buildEntries({ entries: 60, files: 3, checkpointEvery: 9 });
    const { names, files } = splitFiles(entries, starts);
    const all = files.flat();
    writeFiles(dir, names.slice(0, 2), [files[0]!, files[1]!.slice(0, 5)]);

    const { proc, lines, stderr } = spawnFollow(data);
    await waitFor(lines, 25);
    expect(lines).toEqual(all.slice(0, 25).map(exported));

    const f1 = join(dir, names[1]!);
    appendFileSync(f1, files[1]!.slice(5, -1).map((l) => `${l}\n`).join(""));
    const lastOf1 = files[1]!.at(-1)!;
    appendFileSync(f1, lastOf1.slice(0, 40));
    await waitFor(lines, 39);
    await Bun.sleep(600); // three polls: the half line must not appear
    expect(lines).toHaveLength(39);
    appendFileSync(f1, `${lastOf1.slice(40)}\n`);
    await waitFor(lines, 40);

    // Rotation: the next file appears with lines already in it.
    writeFileSync(join(dir, names[2]!), files[2]!.slice(0, 10).map((l) => `${l}\n`).join(""));
    await waitFor(lines, 50);
    expect(lines).toEqual(all.slice(0, 50).map(exported));

    // An edited entry appended: follow stops with FAIL and exit 5.
    const bad = JSON.parse(files[2]![10]!) as Entry;
    bad.ts += 1;
    appendFileSync(join(dir, names[2]!), entryLine(bad));
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "timeout" as const)]);
    expect(code).toBe(EXIT.TRANSCRIPT);
    expect(await stderr).toStartWith(`securechat: FAIL: ${names[2]}:11: entry edited`);
    expect(lines).toHaveLength(50);
  }, 30_000);

  test("--from-end prints only entries written after it started; SIGTERM ends it with exit 0", async () => {
    const data = tempDir("follow");
    const dir = join(data, "transcript");
    const { entries, starts } = buildEntries({ entries: 30, files: 1, checkpointEvery: 9 });
    const { names, files } = splitFiles(entries, starts);
    writeFiles(dir, names, [files[0]!.slice(0, 20)]);
    const { proc, lines, errLines, stderr } = spawnFollow(data, "--from-end", "--user", "alice");
    await waitFor(errLines, 1);
    expect(errLines[0]).toBe(`following ${dir}: 20 existing entries verified; waiting for new ones`);
    appendFileSync(join(dir, names[0]!), files[0]!.slice(20).map((l) => `${l}\n`).join(""));
    const want = entries.slice(20).filter((e) => e.user === "alice" || e.from === "alice" || e.to === "alice");
    expect(want.length).toBeGreaterThan(0);
    await waitFor(lines, want.length);
    await Bun.sleep(300);
    expect(parsed(lines.join("\n"))).toEqual(want);
    proc.kill("SIGTERM");
    const code = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "timeout" as const)]);
    expect(code).toBe(0);
    expect(await stderr).toContain("pass --host-key to pin it");
  }, 30_000);
});
