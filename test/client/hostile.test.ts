/**
 * The chat client against a hostile server (./hostile-server.ts: the real
 * handshake and records, then whatever the test says):
 *
 * - the server ends the session (bye, error, close) while piped stdin still
 *   holds lines, and the client does not reconnect (`--no-reconnect`, or a
 *   bye or an error no new connection can cure): `securechat chat` exits 1
 *   and says how many were not sent, also when stdin is still open;
 *   interactive chat (a pty) exits 1 too; a bye the client asked for is a
 *   clean exit 0;
 * - the server floods while stdout's reader has stopped: the client stops
 *   reading from the socket once its output backlog passes OUTPUT_MAX, so
 *   what waits for stdout stays within OUTPUT_MAX plus one record's output,
 *   and nothing is lost once the reader goes on;
 * - the server sends many large events: the --transcript file gets one
 *   bounded line per message (nothing for lists, notices or errors) and
 *   never grows past --transcript-max; the client says so once and exits 1;
 * - reconnecting: a refusal that is not about authentication is reported,
 *   and the client goes on trying;
 * - a resume the server does not end (no history_end, `more` forever, a
 *   page without progress, `room` answers to joins never sent): the held
 *   live messages and the pages asked stay bounded, the connection ends as
 *   a protocol violation, and the reconnects back off.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { Writable } from "node:stream";
import { type ChatOptions, type ChatSink, ChatClient, HELD_MAX } from "../../src/client/chat.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { BoundedOutput, OUTPUT_MAX } from "../../src/client/output.ts";
import { TRANSCRIPT_LINE_MAX, TranscriptFile } from "../../src/client/transcriptfile.ts";
import { ERROR_TEXT_MAX, MAX_FRAME, MAX_LIST, MESSAGE_TEXT_MAX } from "../../src/protocol/limits.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { Collector } from "../server/chat-helpers.ts";
import { freshPath, waitFor } from "../server/helpers.ts";
import { REPO } from "../hardening/helpers.ts";
import { type HostileConn, type HostileOptions, HostileServer, MessageFlood, polite } from "./hostile-server.ts";

const NET = 20_000;
const servers: HostileServer[] = [];
const procs: { kill(): void }[] = [];
afterEach(() => {
  for (const s of servers) expect(s.errors).toEqual([]);
  for (const s of servers.splice(0)) s.stop();
  for (const p of procs.splice(0)) p.kill();
});

function serve(opts: HostileOptions): HostileServer {
  const s = HostileServer.start(opts);
  servers.push(s);
  s.install("alice");
  return s;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `securechat chat --user alice --server S --room lobby ARGS` with `input` on stdin (closed after it unless `keepOpen`). */
async function chat(s: HostileServer, input: string, args: string[] = [], keepOpen = false): Promise<Run> {
  const proc = Bun.spawn([process.execPath, "src/main.ts", "chat", "--user", "alice", "--server", s.address, "--room", "lobby", ...args], {
    cwd: REPO,
    env: { ...process.env },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  procs.push(proc);
  proc.stdin.write(input);
  await proc.stdin.flush();
  if (!keepOpen) await proc.stdin.end();
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (keepOpen) await proc.stdin.end();
  return { code, stdout, stderr };
}

/** A ChatClient of alice in lobby at `s`, reconnecting unless `extra` says otherwise; no password is ever asked. */
function chatClient(s: HostileServer, sink: ChatSink, extra: Partial<ChatOptions> = {}): ChatClient {
  return new ChatClient(
    { addr: parseServerAddress(s.address), user: "alice", trust: { acceptNew: false }, room: "lobby", password: () => Promise.reject(new Error("test: not used")), reconnect: true, ...extra },
    sink,
  );
}

const events = (stdout: string): Record<string, unknown>[] =>
  stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const lines = (n: number, from = 1): string => Array.from({ length: n }, (_, i) => `line ${from + i}\n`).join("");

/** An unsolicited bye. */
const kick = (c: HostileConn): void => {
  c.send({ type: "bye", reason: "kicked" });
  c.close();
};

/** The ways a server ends a session on its own (a client that reconnects comes back after the error and the close). */
const ENDINGS: [string, (c: HostileConn) => void, RegExp][] = [
  ["bye", kick, /the server ended the session: kicked/],
  ["error", (c) => (c.send({ type: "error", code: "server_shutdown", message: "the server is shutting down" }), c.close()), /the server closed the session: the server is shutting down/],
  ["close", (c) => c.close(), /connection lost: /],
];
/** An error after which no client reconnects. */
const FAILED: [string, (c: HostileConn) => void, RegExp] = [
  "error",
  (c) => (c.send({ type: "error", code: "internal_error", message: "the server failed" }), c.close()),
  /the server closed the session: the server failed/,
];

describe("the server ends the session while piped stdin still has lines", () => {
  for (const [name, end, said] of ENDINGS) {
    for (const open of [false, true]) {
      test(`${name}, stdin ${open ? "still open" : "at its end"}: exit 1, and the lines never sent are counted`, async () => {
        // Never acks: the client sends its window of 32, waits with line 33, and the server ends the session.
        const s = serve({
          message: (c, m) => {
            if (m.type === "join") polite(c, m);
            if (m.type === "say" && c.of("say").length === 32) end(c);
          },
        });
        const r = await chat(s, lines(40), ["--no-reconnect"], open);
        expect(r.code).toBe(1);
        const c = await s.conn();
        expect(c.of("say").map((m) => m.text)).toEqual(Array.from({ length: 32 }, (_, i) => `line ${i + 1}`));
        expect(c.of("bye")).toEqual([]);
        const out = events(r.stdout);
        expect(out.filter((e) => e.type === "sent")).toHaveLength(32);
        // Line 33 was waiting for the window: it is reported not sent; 34…40 were never read.
        expect(r.stderr).toContain("securechat: not sent: the session has ended");
        expect(r.stderr).toMatch(said);
        expect(r.stderr).toContain(open ? "input not sent: 7 line(s) so far, and stdin was still open" : "input not sent: 7 line(s)");
        expect(r.stderr).toContain("33 message(s) were not acknowledged by the server");
      }, NET);
    }
  }

  test("every line sent was acknowledged, then an unsolicited bye while stdin is still open: exit 1, input not sent", async () => {
    const s = serve({
      message: (c, m) => {
        polite(c, m);
        if (m.type === "say") kick(c);
      },
    });
    const r = await chat(s, "line 1\n", [], true);
    expect(r.code).toBe(1);
    expect(events(r.stdout).map((e) => e.type)).toEqual(["connected", "room", "current", "history_end", "sent", "ack", "bye"]);
    expect(r.stderr).toBe("securechat: the server ended the session: kicked; input not sent: stdin was still open\n");
  }, NET);

  test("the session ends before stdin has anything: an open stdin is still reported", async () => {
    const s = serve({
      message: (c, m) => {
        if (m.type === "join") {
          polite(c, m);
          kick(c);
        }
      },
    });
    const r = await chat(s, "", [], true);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the server ended the session: kicked; input not sent: stdin was still open/);
  }, NET);

  test("a bye the client asked for ends it cleanly: exit 0, nothing on stderr", async () => {
    const s = serve({});
    const r = await chat(s, "one\ntwo\n");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const c = await s.conn();
    // The log's state first (PROTOCOL.md §7.13); its own two lines, acknowledged, are read: the marker goes
    // before the bye (§7.14), with the log's state again.
    expect(c.received.map((m) => m.type)).toEqual(["log_proof", "join", "unread", "say", "say", "read", "log_proof", "bye"]);
    expect(events(r.stdout).filter((e) => e.type === "ack")).toHaveLength(2);
  }, NET);
});

describe("interactive chat (a pty)", () => {
  /** The client in a pty (script(1)); `keys` typed once the room is shown. Returns the exit status and what the terminal showed. */
  async function interactive(s: HostileServer, keys: string | null): Promise<{ code: number; screen: string }> {
    const cmd = `stty cols 100 rows 30; exec "${process.execPath}" src/main.ts chat --user alice --server ${s.address} --room lobby`;
    const proc = Bun.spawn(["script", "-qefc", cmd, "/dev/null"], { cwd: REPO, env: { ...process.env, TERM: "xterm" }, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    procs.push(proc);
    let screen = "";
    const reading = (async () => {
      for await (const chunk of proc.stdout) screen += Buffer.from(chunk).toString("utf8");
    })();
    await waitFor("the room on the screen", () => screen.includes("you are in lobby"), 10_000);
    if (keys !== null) {
      proc.stdin.write(keys);
      await proc.stdin.flush();
    }
    const code = await proc.exited;
    await reading;
    await proc.stdin.end();
    return { code, screen };
  }

  for (const [name, end, said] of [ENDINGS[0]!, FAILED]) {
    test(`the server's ${name} ends the session: exit 1, and why`, async () => {
      const s = serve({
        message: (c, m) => {
          polite(c, m);
          if (m.type === "join") setTimeout(() => end(c), 300);
        },
      });
      const r = await interactive(s, null);
      expect(r.code).toBe(1);
      expect(r.screen).toMatch(said);
    }, NET);
  }

  test("/quit: the client's own bye is answered, exit 0", async () => {
    const s = serve({});
    const r = await interactive(s, "/quit\r");
    expect(r.code).toBe(0);
    expect((await s.conn()).received.map((m) => m.type)).toEqual(["log_proof", "join", "unread", "log_proof", "bye"]);
  }, NET);
});

describe("a flood while stdout's reader has stopped", () => {
  /**
   * A server that floods records full of 4 KiB messages after the join, and
   * a ChatClient whose output goes to a stream whose reader has stopped: its
   * first write completes only once `release()` is called.
   */
  async function flooded() {
    const made = { flood: new MessageFlood(), stop: false, sending: null as Promise<number> | null };
    const s = serve({
      message: (c, m) => {
        polite(c, m);
        if (m.type === "join") made.sending = c.flood(made.flood.next, () => made.stop);
      },
    });
    let stopped = true;
    const held: (() => void)[] = [];
    const stdout = new Writable({
      write(_chunk, _enc, done) {
        if (stopped) held.push(done);
        else done();
      },
    });
    const release = () => {
      stopped = false;
      for (const done of held.splice(0)) done();
    };
    const out = new BoundedOutput(stdout);
    const received: number[] = [];
    const sink = new Collector();
    const client = chatClient(
      s,
      {
        event(e) {
          sink.event(e);
          if (e.type === "message") received.push(e.seq);
          out.write(`${JSON.stringify(e)}\n`);
        },
        congested: () => out.congested(),
      },
      { reconnect: false },
    );
    await client.start();
    const c = await s.conn();
    await waitFor("the client to stop reading and the server to be held back", () => client.paused && c.blocked, 15_000);
    return { c, client, out, received, sink, made, release };
  }

  test(`the client stops reading once more than ${OUTPUT_MAX} bytes wait for stdout; none is lost when the reader goes on`, async () => {
    const f = await flooded();
    try {
      // What waits for stdout: at most the bound plus the output of the one record read past it.
      expect(f.out.queued).toBeGreaterThan(OUTPUT_MAX);
      expect(f.out.peak).toBeLessThanOrEqual(OUTPUT_MAX + MAX_FRAME);
      const whileStopped = f.received.length;

      // The reader goes on: everything the server sent arrives, in order, with no gap.
      f.release();
      await waitFor("reading again", () => f.received.length > whileStopped, 10_000);
      f.made.stop = true;
      await f.made.sending;
      await f.c.flushed();
      const seq = f.made.flood.seq;
      await waitFor("every message the server sent", () => f.received.length === seq, 10_000);
      expect(f.received).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
      expect(f.out.peak).toBeLessThanOrEqual(OUTPUT_MAX + MAX_FRAME);
      console.log(`flood: ${seq} messages (${((seq * MESSAGE_TEXT_MAX) / 2 ** 20).toFixed(1)} MiB of text); ${whileStopped} read while stdout was stopped; output backlog peak ${f.out.peak} bytes`);
    } finally {
      f.release();
      f.made.stop = true;
      await f.client.quit();
    }
  }, NET);

  test("the server drops the client as a slow consumer: the client says so once its reader goes on, and fails", async () => {
    const f = await flooded();
    try {
      f.made.stop = true;
      f.c.socket.terminate();
      f.release();
      await f.client.finished;
      expect(f.client.failure).toMatch(/^connection lost: /);
      expect(f.sink.of("disconnected")).toHaveLength(1);
      expect(f.out.peak).toBeLessThanOrEqual(OUTPUT_MAX + MAX_FRAME);
    } finally {
      f.release();
      await f.client.quit();
    }
  }, NET);
});

describe("--transcript against a server that sends a lot", () => {
  const longName = (i: number) => `u${String(i).padStart(31, "0")}`;
  /** Everything a server can inflate that is not a message the user saw. */
  const inflated: Message[] = [
    { type: "room", room: "lobby", users: Array.from({ length: MAX_LIST }, (_, i) => longName(i)), seq: 0 },
    { type: "history_end", room: "lobby", count: 0 },
    { type: "members", room: "lobby", users: Array.from({ length: MAX_LIST }, (_, i) => longName(i)) },
    { type: "room_list", rooms: Array.from({ length: MAX_LIST }, (_, i) => ({ name: `r${String(i).padStart(31, "0")}`, users: 999_999 })) },
    ...Array.from({ length: 50 }, (): Message => ({ type: "notice", code: "n".repeat(64), text: "\\".repeat(ERROR_TEXT_MAX) })),
    ...Array.from({ length: 50 }, (_, i): Message => ({ type: "joined", room: "lobby", user: longName(i), ts: 1 })),
  ];
  /** The worst a message can be for a JSON line: every character escaped, every field at its limit. */
  const worst = (seq: number): Message => ({ type: "message", room: "r".repeat(32), seq, ts: Number.MAX_SAFE_INTEGER, from: longName(seq % 1000), text: '"'.repeat(MESSAGE_TEXT_MAX), action: true, history: true });

  test("one line of at most TRANSCRIPT_LINE_MAX bytes per message, nothing for lists and notices, and never past --transcript-max", async () => {
    const file = freshPath("alice.transcript");
    const MAX = 200_000;
    const FLOOD = 200;
    const s = serve({
      message: (c, m) => {
        if (m.type === "join") {
          for (const e of inflated) c.send(e);
          for (let i = 1; i <= FLOOD; i++) c.send(worst(i));
        } else polite(c, m);
      },
    });
    const r = await chat(s, "hello\n", ["--transcript", file, "--transcript-max", String(MAX)]);
    const size = statSync(file).size;
    const written = readFileSync(file, "utf8").split("\n");
    expect(written.pop()).toBe("");
    const kinds = written.map((l) => (JSON.parse(l) as { kind: string }).kind);
    console.log(`transcript: ${FLOOD} messages of ${MESSAGE_TEXT_MAX} escaped bytes → ${written.length} lines, ${size} bytes (--transcript-max ${MAX})`);

    expect(size).toBeLessThanOrEqual(MAX);
    expect(size).toBeGreaterThan(MAX - TRANSCRIPT_LINE_MAX);
    for (const l of written) expect(Buffer.byteLength(l) + 1).toBeLessThanOrEqual(TRANSCRIPT_LINE_MAX);
    // Only what the user sent and received (the say may go out while the flood is being read), one line per message at most.
    expect(kinds.filter((k) => k !== "recv" && k !== "sent" && k !== "ack")).toEqual([]);
    expect(kinds.filter((k) => k === "recv").length).toBeLessThanOrEqual(FLOOD);
    // The client showed every message, and said once that the transcript stopped.
    expect(events(r.stdout).filter((e) => e.type === "message")).toHaveLength(FLOOD);
    expect(r.stderr.match(/reached --transcript-max 200000 bytes; nothing more is written to it/g)).toHaveLength(1);
    expect(r.code).toBe(1);
    // Lines until the cap, then nothing: of 200 recv, 1 sent and 1 ack lines, the rest is counted.
    expect(r.stderr).toContain(`${FLOOD + 2 - written.length} line(s) were not written to the transcript ${file} (it reached --transcript-max ${MAX} bytes)`);
  }, NET);

  test("without a flood the same session writes every line and exits 0", async () => {
    const file = freshPath("bob.transcript");
    const s = serve({
      message: (c, m) => {
        if (m.type === "join") {
          for (const e of inflated) c.send(e);
          c.send(worst(1));
        } else polite(c, m);
      },
    });
    const r = await chat(s, "hello\n", ["--transcript", file]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const kinds = readFileSync(file, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { kind: string }).kind);
    expect(kinds.sort()).toEqual(["ack", "recv", "sent"]);
  }, NET);

  test("TranscriptFile: the cap counts what the file held before; a line over TRANSCRIPT_LINE_MAX is refused, not written", () => {
    const file = freshPath("carol.transcript");
    writeFileSync(file, "x".repeat(1000));
    const said: string[] = [];
    const t = new TranscriptFile(file, 1100, (text) => said.push(text));
    const bytes = (o: object) => Buffer.byteLength(`${JSON.stringify(o)}\n`);
    const huge = { kind: "recv", text: "y".repeat(TRANSCRIPT_LINE_MAX) };
    t.append(huge);
    expect(said).toEqual([`transcript: a line of ${bytes(huge)} bytes is longer than ${TRANSCRIPT_LINE_MAX} and was not written`]);
    const short = { kind: "recv", text: "short" };
    t.append(short);
    expect(statSync(file).size).toBe(1000 + bytes(short));
    t.append({ kind: "recv", text: "z".repeat(100) });
    t.append(short); // would fit, but the file was full before it
    expect(statSync(file).size).toBe(1000 + bytes(short));
    expect(said).toHaveLength(2);
    expect(said[1]).toBe(`transcript ${file}: it reached --transcript-max 1100 bytes; nothing more is written to it`);
    expect(t.notWritten).toBe(3);
    expect(t.problem).toBe(`3 line(s) were not written to the transcript ${file} (it reached --transcript-max 1100 bytes; 1 longer than ${TRANSCRIPT_LINE_MAX} bytes)`);
  });
});

describe("reconnecting", () => {
  test("a refusal that is not about authentication is reported, and the client goes on trying", async () => {
    const s = serve({
      refuse: (n) => (n === 2 ? "server_busy" : null),
      message: (c, m, n) => {
        polite(c, m);
        if (m.type === "join" && n === 1) c.close();
      },
    });
    const sink = new Collector();
    const client = chatClient(s, sink);
    try {
      await client.start();
      await sink.until("reconnected", () => sink.of("reconnected").length === 1, 15_000);
      const locals = sink.of("local").map((e) => e.text);
      // A refusal in clear, before the server has proven its key, is shown as unauthenticated.
      expect(locals).toEqual(['reconnecting failed (attempt 1): error from an unauthenticated peer (not verified as the server): "server_busy: hostile server: go away"']);
      expect(sink.events.map((e) => e.type).filter((t) => t === "disconnected" || t === "reconnecting" || t === "local" || t === "connected" || t === "reconnected")).toEqual([
        "connected",
        "disconnected",
        "reconnecting",
        "local",
        "reconnecting",
        "reconnected",
      ]);
      expect(client.failure).toBeNull();
    } finally {
      await client.quit();
    }
  }, NET);
});

describe("a server that never ends a resume", () => {
  /** A message of lobby from mallory: live, or history. */
  const msg = (seq: number, history = false): Message => ({ type: "message", room: "lobby", seq, ts: 1, from: "mallory", text: `m${seq}`, ...(history ? { history: true } : {}) });
  const room = (c: HostileConn, seq: number): Message => ({ type: "room", room: "lobby", users: [c.user], seq });

  /** Connection 1 is polite and closes once lobby is joined, so the client resumes lobby (since 0) on connection 2, which `resume` answers; later connections are polite. */
  function resumeOn2(resume: (c: HostileConn, m: Message) => void): HostileServer {
    return serve({
      message: (c, m, n) => {
        if (n === 2) return resume(c, m);
        polite(c, m);
        if (m.type === "join" && n === 1) c.close();
      },
    });
  }

  /** Waits until the client has answered `pongs` of the server's pings on `c`, or closed `c`. */
  const settled = (c: HostileConn, pongs: number) => waitFor("a pong or the close", () => c.closedAt !== null || c.of("pong").length >= pongs, 15_000);
  const lastReason = (sink: Collector) => sink.of("disconnected").at(-1)?.reason;
  const reconnected = (sink: Collector, n = 1) => sink.until(`reconnected ${n}`, () => sink.of("reconnected").length === n, 15_000);

  /** Starts a reconnecting client of `s` with `base` ms as its first wait, runs `body`, and quits whatever happened; `made` sees the client before it starts. */
  async function withClient(s: HostileServer, body: (sink: Collector, client: ChatClient) => Promise<void>, base = 10, made?: (client: ChatClient) => void): Promise<void> {
    const sink = new Collector();
    const client = chatClient(s, sink, { reconnectBaseMs: base });
    made?.(client);
    try {
      await client.start();
      await body(sink, client);
    } finally {
      await client.quit();
    }
  }

  test("one's own line acked early in a resume that is cut short is not shown again by the history of the next resume", async () => {
    const said = (c: HostileConn): Message => ({ type: "message", room: "lobby", seq: 1, ts: 1, from: c.user, text: "said once", history: true });
    const s = serve({
      message: (c, m, n) => {
        // 1: the line is recorded, and its ack lost with the connection.
        if (n === 1 && m.type === "say") return c.close();
        // 2: the line sent again early is answered with its first ack; the connection is lost before the rooms are rejoined.
        if (n === 2 && m.type === "say") return c.send({ type: "ack", id: m.id, seq: 1, ts: 1 });
        if (n === 2 && m.type === "join") return c.close();
        // 3: the rejoin's history holds it.
        if (n === 3 && m.type === "join") return c.send(room(c, 1), said(c), { type: "history_end", room: "lobby", count: 1 });
        polite(c, m);
      },
    });
    await withClient(s, async (sink, client) => {
      await client.say("said once");
      await reconnected(sink);
      expect(sink.of("ack").map((a) => a.seq)).toEqual([1]);
      expect((await s.conn(3)).of("join")).toEqual([{ type: "join", room: "lobby", since: 0 }]);
      expect(sink.of("message")).toEqual([]);
    });
  }, NET);

  test(`no history_end: ${HELD_MAX} live messages are held, the next one ends the connection, and the client resumes on a new one`, async () => {
    const T = 5;
    const s = resumeOn2((c, m) => {
      if (m.type === "join") c.send(room(c, T));
    });
    await withClient(s, async (sink, client) => {
      const c = await s.conn(2);
      await c.until("the rejoin", (m) => m.type === "join");
      for (let i = 0; i < HELD_MAX; i += 100) c.send(...Array.from({ length: 100 }, (_, k) => msg(T + 1 + i + k)));
      c.send({ type: "ping" });
      await settled(c, 1);
      expect(c.closedAt).toBeNull();
      expect(client.held).toBe(HELD_MAX);

      c.send(msg(T + 1 + HELD_MAX), { type: "ping" });
      await settled(c, 2);
      expect(c.of("pong")).toHaveLength(1);
      expect(c.closedAt).not.toBeNull();
      expect(lastReason(sink)).toBe(`protocol: the server sent more than ${HELD_MAX} live messages while the history of lobby was still being paged in`);
      expect(client.held).toBe(0);
      // None of them was shown: their history never came. Connection 3 resumes lobby as usual.
      await reconnected(sink);
      expect(sink.of("message")).toEqual([]);
      expect((await s.conn(3)).of("join")).toEqual([{ type: "join", room: "lobby", since: 0 }]);
    });
  }, NET);

  test("every page says more and brings one new message while live messages pour in: the held messages and the pages asked stay bounded", async () => {
    const T = 1_000_000;
    const BATCH = 100;
    const STOP = 100;
    let client: ChatClient | null = null;
    const pages = { asked: 0, heldMax: 0 };
    // One history message after `since`, more, and a batch of live messages far ahead of it.
    const page = (c: HostileConn, since: number) =>
      c.send(msg(since + 1, true), { type: "history_end", room: "lobby", count: 1, more: true }, ...Array.from({ length: BATCH }, (_, k) => msg(T + 1 + pages.asked * BATCH + k)));
    const s = resumeOn2((c, m) => {
      if (m.type === "join") {
        c.send(room(c, T));
        page(c, m.since ?? 0);
      }
      if (m.type === "history") {
        pages.asked++;
        pages.heldMax = Math.max(pages.heldMax, client!.held);
        if (pages.asked < STOP) page(c, m.since ?? 0);
        else c.send({ type: "ping" });
      }
    });
    await withClient(s, async (sink) => {
      const c = await s.conn(2);
      await settled(c, 1);
      expect(pages.heldMax).toBeLessThanOrEqual(HELD_MAX);
      expect(pages.asked).toBeLessThanOrEqual(HELD_MAX / BATCH + 1);
      expect(c.closedAt).not.toBeNull();
      expect(c.of("pong")).toEqual([]);
      expect(lastReason(sink)).toBe(`protocol: the server sent more than ${HELD_MAX} live messages while the history of lobby was still being paged in`);
      await reconnected(sink);
      // What the history brought was shown, each once, in order.
      const seqs = sink.of("message").map((e) => e.seq);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    }, 10, (made) => (client = made));
  }, NET);

  test(`held live messages that the history has overtaken do not count: a resume that catches up past ${HELD_MAX} live messages completes, every seq once`, async () => {
    let last = 0; // the highest seq said in lobby so far
    /** Sends `msgs` in records of 100. */
    const sendAll = (c: HostileConn, msgs: Message[]) => {
      for (let i = 0; i < msgs.length; i += 100) c.send(...msgs.slice(i, i + 100));
    };
    const say = (c: HostileConn, n: number) => sendAll(c, Array.from({ length: n }, () => msg(++last)));
    // Pages of at most 1000 from `since` up to the last seq said, more until they reach it.
    const page = (c: HostileConn, since: number) => {
      const end = Math.min(since + 1000, last);
      sendAll(c, [...Array.from({ length: end - since }, (_, i) => msg(since + 1 + i, true)), { type: "history_end", room: "lobby", count: end - since, ...(end < last ? { more: true } : {}) }]);
    };
    let asked = 0;
    const s = resumeOn2((c, m) => {
      if (m.type === "join") {
        // The history up to the room's seq, marked more; meanwhile the room fills the client's held messages.
        last = 5;
        c.send(room(c, 5), ...[1, 2, 3, 4, 5].map((seq) => msg(seq, true)), { type: "history_end", room: "lobby", count: 5, more: true });
        say(c, HELD_MAX);
      }
      if (m.type === "history") {
        page(c, m.since ?? 0);
        if (++asked === 1) say(c, 500);
      }
      if (m.type === "bye") polite(c, m);
    });
    await withClient(s, async (sink) => {
      await reconnected(sink);
      expect(sink.of("message").map((e) => e.seq)).toEqual(Array.from({ length: HELD_MAX + 505 }, (_, i) => i + 1));
      expect(sink.of("reconnected")[0]!.rooms).toEqual([{ room: "lobby", missed: HELD_MAX + 505, gap: 0 }]);
      expect(sink.of("disconnected")).toHaveLength(1);
    });
  }, NET);

  for (const first of [[], [1, 2, 3]]) {
    test(`a page marked more that brings nothing after since (${first.length === 0 ? "the join's answer" : "the second page"}) ends the connection instead of being asked again`, async () => {
      const asked: Message<"history">[] = [];
      // The same answer every time: `first`, then more.
      const page = (c: HostileConn) => c.send(...first.map((seq) => msg(seq, true)), { type: "history_end", room: "lobby", count: first.length, more: true });
      const s = resumeOn2((c, m) => {
        if (m.type === "join") {
          c.send(room(c, 10));
          page(c);
        }
        if (m.type === "history") {
          asked.push(m);
          if (asked.length < 50) page(c);
          else c.send({ type: "ping" });
        }
      });
      await withClient(s, async (sink) => {
        const c = await s.conn(2);
        await settled(c, 1);
        const since = first.at(-1) ?? 0;
        expect(asked.map((h) => h.since)).toEqual(first.length === 0 ? [] : [since]);
        expect(c.closedAt).not.toBeNull();
        expect(lastReason(sink)).toBe(`protocol: the server said more history of lobby follows, but sent none after seq ${since}`);
        await reconnected(sink);
        expect(sink.of("message").map((e) => e.seq)).toEqual(first);
      });
    }, NET);
  }

  test("room answers to joins never sent end the connection: the client rejoins only the rooms it asked for", async () => {
    const s = serve({
      message: (c, m, n) => {
        polite(c, m);
        if (m.type === "join" && n === 1) c.send(...Array.from({ length: MAX_LIST }, (_, i): Message => ({ type: "room", room: `r${i}`, users: [c.user], seq: 0 })), { type: "ping" });
      },
    });
    await withClient(s, async (sink, client) => {
      const c = await s.conn(1);
      await settled(c, 1);
      expect(c.closedAt).not.toBeNull();
      expect(c.of("pong")).toEqual([]);
      expect(client.rooms).toEqual(["lobby"]);
      expect(lastReason(sink)).toBe("protocol: the server answered a join of r0 that this client did not send");
      await reconnected(sink);
      expect((await s.conn(2)).of("join")).toEqual([{ type: "join", room: "lobby", since: 0 }]);
      expect(client.rooms).toEqual(["lobby"]);
    });
  }, NET);

  test("a server that breaks every resume meets a growing backoff, counted again from the last resume that completed", async () => {
    const BASE = 10;
    const s = serve({
      message: (c, m, n) => {
        // Connections 2…5 answer the rejoin with a page marked more that brings nothing.
        if (n >= 2 && n <= 5 && m.type === "join") return c.send(room(c, 10), { type: "history_end", room: "lobby", count: 0, more: true });
        polite(c, m);
        if (m.type === "join" && (n === 1 || n === 6)) c.close();
      },
    });
    await withClient(s, async (sink) => {
      await reconnected(sink, 2);
      const waits = sink.of("reconnecting");
      expect(waits.map((e) => e.attempt)).toEqual([1, 2, 3, 4, 5, 1]);
      // The announced waits double (times the jitter factor in [0.5, 1.5)): no attempt is made at once.
      for (const e of waits) {
        const wait = BASE * 2 ** (e.attempt - 1);
        expect(e.in_ms).toBeGreaterThanOrEqual(Math.floor(0.5 * wait));
        expect(e.in_ms).toBeLessThanOrEqual(Math.ceil(1.5 * wait));
      }
      expect(sink.of("disconnected").filter((e) => e.reason.startsWith("protocol: "))).toHaveLength(4);
      // The first `reconnected` counts from the loss of the working connection, across the four broken resumes (each wait is slept in full).
      const waited = waits.slice(0, 5).reduce((sum, e) => sum + e.in_ms, 0);
      expect(sink.of("reconnected")[0]!.after_ms).toBeGreaterThanOrEqual(waited - 5);
    }, BASE);
  }, NET);
});
