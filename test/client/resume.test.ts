/**
 * Resume, not restart (src/client/chat.ts against real in-process servers):
 * after a dropped connection or a server restart the client is back in every
 * room, gets exactly the messages it missed (no duplicates, no gaps), sends
 * what was typed meanwhile, reports what may or may not have arrived, stops
 * on a changed host key with that error's code, and logs in again when its
 * ticket expired.
 *
 * The client reaches the server through a Gate (a plain TCP relay) that the
 * test can close to new connections, cut, or freeze, so what happens while
 * the client is away is decided by the test, not by timing.
 */
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { ChatClient, QUEUE_MAX } from "../../src/client/chat.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { saveIdentity } from "../../src/client/keystore.ts";
import { addKnownHost, findKnownHost } from "../../src/client/known_hosts.ts";
import { saveTicket } from "../../src/client/tickets.ts";
import { SecureChatError } from "../../src/errors.ts";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { type ChatOptions, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import type { ServerOptions } from "../../src/server/server.ts";
import type { Logger } from "../../src/log.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { type Cred, type Machine, type Seed, Collector, Peer, cred, install, machine, quitAll, registerWithTicket, seedAccounts, serverFrom } from "../server/chat-helpers.ts";
import { type TestServer, freshPath, startServer } from "../server/helpers.ts";

const NET = 30_000;
const FAST = { rate: 100_000, burst: 100_000 };

/** A server on `dir` whose journal is the transcript in DIR/transcript, as `serve` sets it up: numbers and history survive a restart. */
function serve(dir: string, chat: ChatOptions, port?: number): Promise<TestServer> {
  const log: Logger = { info: () => {}, warn: () => {} };
  const journal = TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dir, "transcript"), hostKey: loadOrCreateHostKey(dir).key, version: "test", log, history: chat.history });
  return startServer({ dataDir: dir, journal, chat, ...(port !== undefined ? { port } : {}) });
}

/** A TCP relay in front of the server: closed (refuses new connections), cut (drops every connection), frozen (holds what the client sends), deaf (drops what the server sends). */
class Gate {
  open = true;
  frozen = false;
  deaf = false;
  /** Bytes from the server dropped while deaf. */
  dropped = 0;
  readonly #pairs = new Set<{ client: net.Socket; server: net.Socket }>();
  readonly #listener: net.Server;

  private constructor(public upstream: number) {
    this.#listener = net.createServer((client) => {
      if (!this.open) return void client.destroy();
      const server = net.connect(this.upstream, "127.0.0.1");
      const pair = { client, server };
      this.#pairs.add(pair);
      const end = () => {
        this.#pairs.delete(pair);
        client.destroy();
        server.destroy();
      };
      client.on("data", (d) => {
        if (!this.frozen) server.write(d);
      });
      server.on("data", (d) => {
        if (this.deaf) this.dropped += d.length;
        else client.write(d);
      });
      for (const s of [client, server]) {
        s.on("close", end);
        s.on("error", end);
      }
    });
  }

  static async start(upstream: number): Promise<Gate> {
    const g = new Gate(upstream);
    await new Promise<void>((r) => g.#listener.listen(0, "127.0.0.1", r));
    return g;
  }

  get address(): string {
    return `127.0.0.1:${(this.#listener.address() as net.AddressInfo).port}`;
  }

  cut(): void {
    for (const p of this.#pairs) {
      p.client.destroy();
      p.server.destroy();
    }
  }

  close(): void {
    this.cut();
    this.#listener.close();
  }
}

let seed: Seed;
beforeAll(async () => {
  seed = await seedAccounts(["alice", "bob"]);
}, NET);

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/**
 * Makes `m` this process's client machine for the rest of the test: a
 * reconnecting client reads its ticket and known_hosts while it reconnects,
 * long after start().
 */
function useMachine(m: Machine): void {
  const before = process.env.SECURECHAT_HOME;
  process.env.SECURECHAT_HOME = m.home;
  cleanup.push(() => {
    if (before === undefined) delete process.env.SECURECHAT_HOME;
    else process.env.SECURECHAT_HOME = before;
  });
}

/** Pins `t`'s host key for the gate's address (another address of the same server) on the current machine. */
function pinGate(t: TestServer, gate: Gate): string {
  const id = parseServerAddress(gate.address).id;
  if (!findKnownHost(id)) addKnownHost(id, t.server.hostKey.publicKey);
  return id;
}

/** A reconnecting ChatClient (short waits) of `user` at `address`; started by the caller, quit at the end of the test. */
function reconnecting(address: string, user: string, sink: Collector, password: () => Promise<string>, extra: Partial<ChatClient["opts"]> = {}): ChatClient {
  const client = new ChatClient(
    { addr: parseServerAddress(address), user, trust: { acceptNew: false }, room: "lobby", password, reconnect: true, reconnectBaseMs: 20, ...extra },
    sink,
  );
  cleanup.push(() => quitAll(client));
  return client;
}

/** A reconnecting ChatClient of `c` on machine `m`, through `gate`, started in `room`. */
async function resumingClient(t: TestServer, gate: Gate, m: Machine, c: Cred, room: string, extra: Partial<ChatClient["opts"]> = {}) {
  const sink = new Collector();
  useMachine(m);
  const id = pinGate(t, gate);
  saveTicket(id, c.user, { ticket: c.ticket, expiresAt: c.expiresAt, key: c.ticketKey });
  const client = reconnecting(gate.address, c.user, sink, () => Promise.reject(new Error("test: the ticket should have been enough")), { room, ...extra });
  await client.start();
  await sink.inRoom(room);
  return { client, sink };
}

/** A server on a copy of the seed (its chat options changed by `chat`), behind a Gate; both stopped at the end of the test. */
async function gated(chat: Partial<ChatOptions>, extra: Partial<ServerOptions> = {}): Promise<{ t: TestServer; gate: Gate }> {
  const t = await serverFrom(seed, { chat: { ...DEFAULT_CHAT, flood: FAST, ...chat }, ...extra });
  cleanup.push(() => t.server.stop());
  const gate = await Gate.start(t.port);
  cleanup.push(() => gate.close());
  return { t, gate };
}

/** Room messages `sink` delivered for `room`, as "seq text", live and history alike. */
const seen = (sink: Collector, room: string): string[] => sink.of("message").filter((m) => m.room === room).map((m) => `${m.seq} ${m.text}`);

/** Says each line as bob and waits for every ack. */
async function bobSays(bob: Peer, lines: [room: string, text: string][]): Promise<void> {
  const before = bob.of("ack").length;
  lines.forEach(([room, text], i) => bob.send({ type: "say", id: 1000 + before + i, room, text }));
  await bob.until("bob's acks", () => bob.of("ack").length === before + lines.length);
}

/** A server behind a Gate (default options) and bob logged in to it directly, in no room. */
async function gatedWithBob(): Promise<{ t: TestServer; gate: Gate; bob: Peer }> {
  const { t, gate } = await gated({});
  return { t, gate, bob: await bobIn(t.port) };
}

/** Sends alice a DM as bob and waits for its ack. */
async function bobDm(bob: Peer, text: string): Promise<void> {
  const id = 2000 + bob.of("ack").length;
  bob.send({ type: "dm", id, to: "alice", text });
  await bob.until("bob's ack", () => bob.of("ack").some((a) => a.id === id));
}

async function bobIn(port: number, ...rooms: string[]): Promise<Peer> {
  const bob = await Peer.login(port, cred(seed, "bob"));
  cleanup.push(() => bob.close());
  for (const r of rooms) await bob.join(r);
  return bob;
}

describe("a server restart (stopped, started again on the same data and port)", () => {
  test("the client is back in both rooms, gets each missed message once, then sends the lines typed meanwhile", async () => {
    const chat = { ...DEFAULT_CHAT, flood: FAST };
    const dir = freshPath("data");
    cpSync(seed.dataDir, dir, { recursive: true });
    const t1 = await serve(dir, chat);
    const gate = await Gate.start(t1.port);
    cleanup.push(() => gate.close());
    const { client: a, sink } = await resumingClient(t1, gate, machine("resume-alice"), cred(seed, "alice"), "general");
    a.request({ type: "join", room: "ops" });
    await sink.until("ops", () => a.rooms.length === 2);
    expect(a.rooms).toEqual(["general", "ops"]);
    expect(a.room).toBe("ops");
    let bob = await bobIn(t1.port, "general", "ops");
    await bobSays(bob, [
      ["general", "g1"],
      ["ops", "o1"],
    ]);
    await sink.until("the live lines", () => seen(sink, "ops").length === 1 && seen(sink, "general").length === 1);

    // The server goes (as on SIGTERM: server_shutdown), and the client cannot come back yet.
    gate.open = false;
    await t1.server.stop();
    await sink.until("the disconnection", () => sink.of("disconnected").length === 1);
    // One event says it, with the server's code: not an `error` as well (a person would read it twice).
    expect(sink.of("disconnected").map((e) => e.code)).toEqual(["server_shutdown"]);
    expect(sink.of("error")).toEqual([]);
    expect(a.ended).toBe(false);
    await a.say("typed while down, in ops");
    expect(a.switchTo("general")).toBe(true);
    expect(a.switchTo("nowhere")).toBe(false);
    await a.say("typed while down, in general");
    expect(sink.of("sent").filter((s) => s.queued).map((s) => [s.room, s.text])).toEqual([
      ["ops", "typed while down, in ops"],
      ["general", "typed while down, in general"],
    ]);

    // The server is back on the same data and port; bob says more while the client is still away.
    const t2 = await serve(dir, chat, t1.port);
    cleanup.push(() => t2.server.stop());
    bob = await bobIn(t2.port, "general", "ops");
    await bobSays(bob, [
      ["general", "g2"],
      ["ops", "o2"],
      ["general", "g3"],
    ]);
    gate.open = true;

    await sink.until("reconnected", () => sink.of("reconnected").length === 1, 20_000);
    const r = sink.of("reconnected")[0]!;
    expect(r.rooms).toEqual([
      { room: "general", missed: 2, gap: 0 },
      { room: "ops", missed: 1, gap: 0 },
    ]);
    expect(r.after_ms).toBeGreaterThan(0);
    expect(a.rooms).toEqual(["general", "ops"]);
    expect(a.room).toBe("general");
    // Each message exactly once, in order: live before the restart, missed ones after.
    expect(seen(sink, "general")).toEqual(["1 g1", "2 g2", "3 g3"]);
    expect(seen(sink, "ops")).toEqual(["1 o1", "2 o2"]);
    // The missed messages come before `reconnected`, the queued lines after it.
    const at = (p: (e: (typeof sink.events)[number]) => boolean) => sink.events.findIndex(p);
    expect(at((e) => e.type === "message" && e.text === "g3")).toBeLessThan(at((e) => e.type === "reconnected"));

    await bob.until("the queued lines", () => bob.of("message").filter((m) => m.from === "alice").length === 2);
    expect(bob.of("message").filter((m) => m.from === "alice").map((m) => [m.room, m.text])).toEqual([
      ["ops", "typed while down, in ops"],
      ["general", "typed while down, in general"],
    ]);
    await sink.until("their acks", () => sink.of("ack").length === 2);
    expect(sink.of("unsent")).toEqual([]);
    expect(sink.of("connected")).toHaveLength(1);
    await a.quit();
    expect(a.unacknowledged).toBe(0);
  }, NET);
});

describe("a dropped connection (the server keeps running)", () => {
  test("live messages arriving while the history is paged in are neither lost nor repeated; every seq once, in order", async () => {
    // A small history budget: what was missed takes several pages.
    const { t, gate } = await gated({ history: 100, historyBytes: 20_000 });
    const { client: a, sink } = await resumingClient(t, gate, machine("paging-alice"), cred(seed, "alice"), "lobby");
    const bob = await bobIn(t.port, "lobby");
    await bobSays(bob, [["lobby", "before"]]);
    await sink.until("the first line", () => seen(sink, "lobby").length === 1);

    gate.open = false;
    gate.cut();
    await sink.until("the disconnection", () => sink.of("disconnected").length === 1);
    const big = (i: number) => `${i} ${"z".repeat(4000)}`;
    await bobSays(bob, Array.from({ length: 12 }, (_, i) => ["lobby", big(i + 2)] as [string, string]));
    gate.open = true;
    // Bob goes on talking while the client comes back: these are live, or history, never both.
    for (let i = 14; i <= 40; i++) {
      await bobSays(bob, [["lobby", `live ${i}`]]);
    }
    await sink.until("reconnected", () => sink.of("reconnected").length === 1, 20_000);
    await sink.until("every line", () => seen(sink, "lobby").length === 40, 20_000);
    const seqs = sink.of("message").filter((m) => m.room === "lobby").map((m) => m.seq);
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(sink.of("reconnected")[0]!.rooms[0]!.gap).toBe(0);
    expect(sink.of("reconnected")[0]!.rooms[0]!.missed).toBeGreaterThanOrEqual(12);
  }, NET);

  test("DMs stored while the user was away are shown once in a run: a reconnect, shown them again, adds only the new one", async () => {
    const { t, gate, bob } = await gatedWithBob();
    await bobDm(bob, "while you were out");
    const { sink } = await resumingClient(t, gate, machine("late-alice"), cred(seed, "alice"), "lobby");
    await sink.until("the late dm", () => sink.of("direct").length === 1);
    gate.open = false;
    gate.cut();
    await sink.until("the disconnection", () => sink.of("disconnected").length === 1);
    await bobDm(bob, "while you were cut off");
    gate.open = true;
    await sink.until("reconnected", () => sink.of("reconnected").length === 1, 20_000);
    await sink.until("the second late dm", () => sink.of("direct").length >= 2);
    expect(bob.of("ack").map((a) => a.stored)).toEqual([true, true]);
    expect(sink.of("direct").map((d) => [d.text, d.late])).toEqual([
      ["while you were out", true],
      ["while you were cut off", true],
    ]);
  }, NET);

  test("a DM stored while the user was away is shown until the device has read it: a second run shows only the new one; another machine of the same key starts where it stopped", async () => {
    const { t, gate, bob } = await gatedWithBob();
    // The late DMs come right after welcome, before the answer to the join: in the room, every one was shown.
    const run = async (m: Machine) => {
      const { client, sink } = await resumingClient(t, gate, m, cred(seed, "alice"), "lobby");
      await client.quit();
      return sink.of("direct").map((d) => [d.text, d.late]);
    };
    const laptop = machine("late-laptop");
    await bobDm(bob, "first");
    await bobDm(bob, "second");
    expect(await run(laptop)).toEqual([
      ["first", true],
      ["second", true],
    ]);
    await bobDm(bob, "third");
    expect(bob.of("ack").map((a) => a.stored)).toEqual([true, true, true]);
    expect(await run(laptop)).toEqual([["third", true]]);
    expect(await run(laptop)).toEqual([]);
    // The marker is the server's: a machine with the same key (one device, PROTOCOL.md §7.14) has nothing left to read.
    expect(await run(machine("late-phone"))).toEqual([]);
    await bobDm(bob, "fourth");
    expect(await run(machine("late-phone"))).toEqual([["fourth", true]]);
  }, NET);

  test("messages the server no longer keeps are reported as a gap, not hidden", async () => {
    const { t, gate } = await gated({ history: 3 });
    const { sink } = await resumingClient(t, gate, machine("gap-alice"), cred(seed, "alice"), "lobby");
    const bob = await bobIn(t.port, "lobby");
    gate.open = false;
    gate.cut();
    await sink.until("the disconnection", () => sink.of("disconnected").length === 1);
    await bobSays(bob, Array.from({ length: 8 }, (_, i) => ["lobby", `m${i + 1}`] as [string, string]));
    gate.open = true;
    await sink.until("reconnected", () => sink.of("reconnected").length === 1, 20_000);
    expect(sink.of("reconnected")[0]!.rooms).toEqual([{ room: "lobby", missed: 3, gap: 5 }]);
    expect(seen(sink, "lobby")).toEqual(["6 m6", "7 m7", "8 m8"]);
  }, NET);

  test("a line pending when the connection drops, which never reached the server, is sent again after the reconnect: it arrives once", async () => {
    const { t, gate } = await gated({});
    const { client: a, sink } = await resumingClient(t, gate, machine("pending-alice"), cred(seed, "alice"), "lobby");
    const bob = await bobIn(t.port, "lobby");
    gate.frozen = true; // what the client sends from now on never reaches the server
    await a.say("in limbo");
    expect(sink.of("sent").map((s) => [s.text, s.queued ?? false])).toEqual([["in limbo", false]]);
    gate.frozen = false;
    gate.cut();
    await sink.until("the resent line's ack", () => sink.of("ack").length === 1, 20_000);
    expect(sink.of("disconnected")[0]!.reason).toMatch(/1 message\(s\) not yet acknowledged will be sent again once reconnected/);
    expect(sink.of("ack")[0]).toMatchObject({ id: sink.of("sent")[0]!.id, seq: 1 });
    expect(sink.of("unsent")).toEqual([]);
    expect(a.unacknowledged).toBe(0);
    await a.say("after the reconnect");
    await bob.until("the new line", () => bob.of("message").length === 2);
    expect(bob.of("message").map((m) => `${m.seq} ${m.text}`)).toEqual(["1 in limbo", "2 after the reconnect"]);
  }, NET);

  test("a line the server recorded but whose ack was lost with the connection: sent again with its cid, acked with its first seq, shown to others once", async () => {
    const { t, gate } = await gated({});
    const { client: a, sink } = await resumingClient(t, gate, machine("lost-ack-alice"), cred(seed, "alice"), "lobby");
    const bob = await bobIn(t.port, "lobby");
    gate.deaf = true; // what the server sends from now on never reaches the client: its ack among it
    await a.say("said once");
    await bob.until("the line", () => bob.of("message").length === 1);
    await sink.until("the ack to be sent, and dropped", () => gate.dropped > 0, 10_000);
    gate.cut();
    gate.deaf = false;
    await sink.until("the resent line's ack", () => sink.of("ack").length === 1, 20_000);
    expect(sink.of("ack")[0]).toMatchObject({ id: sink.of("sent")[0]!.id, seq: 1 });
    expect(sink.of("unsent")).toEqual([]);
    // the rejoin's history does not show it to its author a second time: the ack stands for it
    await sink.until("the rejoin", () => sink.of("reconnected").length === 1, 20_000);
    expect(sink.of("message").filter((m) => m.seq === 1)).toEqual([]);
    await a.say("and then this");
    await bob.until("the next line", () => bob.of("message").length === 2);
    expect(bob.of("message").map((m) => `${m.seq} ${m.text}`)).toEqual(["1 said once", "2 and then this"]);
  }, NET);

  for (const piped of [false, true]) {
    test(`at most ${QUEUE_MAX} lines wait for the connection; past it ${piped ? "a piped say waits for room (stdin is not read)" : "an interactive line is refused visibly"}`, async () => {
      const { t, gate } = await gated({});
      const { client: a, sink } = await resumingClient(t, gate, machine(`queue-${piped}`), cred(seed, "alice"), "lobby", { waitWhenQueueFull: piped });
      const bob = await bobIn(t.port, "lobby");
      gate.open = false;
      gate.cut();
      await sink.until("the disconnection", () => sink.of("disconnected").length === 1);
      for (let i = 1; i <= QUEUE_MAX; i++) await a.say(`q${i}`);
      expect(sink.of("sent").filter((s) => s.queued)).toHaveLength(QUEUE_MAX);
      let returned = false;
      const last = a.say(`q${QUEUE_MAX + 1}`).then(() => (returned = true));
      await Bun.sleep(100);
      if (piped) {
        expect(returned).toBe(false); // still waiting: the caller reads no more input
        expect(sink.of("unsent")).toEqual([]);
      } else {
        expect(returned).toBe(true);
        expect(sink.of("unsent").map((u) => u.reason)).toEqual([`not sent: ${QUEUE_MAX} lines are already waiting for the connection to come back`]);
      }
      gate.open = true;
      await last;
      const n = piped ? QUEUE_MAX + 1 : QUEUE_MAX;
      await bob.until("the queued lines", () => bob.of("message").length === n, 20_000);
      expect(bob.of("message").map((m) => m.text)).toEqual(Array.from({ length: n }, (_, i) => `q${i + 1}`));
      await sink.until("every ack", () => sink.of("ack").length === n, 20_000);
      expect(a.unacknowledged).toBe(piped ? 0 : 1);
    }, NET);
  }
});

describe("the first room's history (chat --no-history, --since-seq)", () => {
  test("none of it; or only what came after a seq, with what the server no longer keeps and a numbering that went back said", async () => {
    const { t, gate } = await gated({ history: 4 });
    const bob = await bobIn(t.port, "lobby");
    await bobSays(bob, Array.from({ length: 6 }, (_, i) => ["lobby", `m${i + 1}`] as [string, string]));
    const start = async (history: ChatClient["opts"]["history"], name: string) => {
      const { client, sink } = await resumingClient(t, gate, machine(name), cred(seed, "alice"), "lobby", { history });
      await client.quit();
      return sink;
    };
    const none = await start("none", "since-none");
    expect(seen(none, "lobby")).toEqual([]);
    expect(none.of("history_end")).toEqual([{ type: "history_end", room: "lobby", count: 0 }]);
    const after4 = await start({ since: 4 }, "since-4");
    expect(seen(after4, "lobby")).toEqual(["5 m5", "6 m6"]);
    expect(after4.of("local")).toEqual([]);
    const after0 = await start({ since: 0 }, "since-0");
    expect(seen(after0, "lobby")).toEqual(["3 m3", "4 m4", "5 m5", "6 m6"]);
    expect(after0.of("local").map((l) => l.text)).toEqual(["2 message(s) of lobby that you asked for are no longer kept by the server"]);
    const ahead = await start({ since: 99 }, "since-99");
    expect(seen(ahead, "lobby")).toEqual([]);
    expect(ahead.of("local").map((l) => l.text)).toEqual([expect.stringMatching(/^the server's numbering of lobby went back from 99 to 6/)]);
  }, NET);
});

describe("reconnecting meets trouble", () => {
  test("a changed host key during a reconnect ends the client with the host key error's code (exit 4 in the command)", async () => {
    const { t, gate } = await gated({});
    const { client: a, sink } = await resumingClient(t, gate, machine("hostkey-alice"), cred(seed, "alice"), "lobby");
    // Another server (another host key) now answers at the same address.
    const impostor = await startServer();
    cleanup.push(() => impostor.server.stop());
    gate.upstream = impostor.port;
    gate.cut();
    await a.finished;
    expect(a.ended).toBe(true);
    expect(a.failureError?.code).toBe("host_key_changed");
    expect(sink.of("reconnected")).toEqual([]);
  }, NET);

  const EXPIRING_PASSWORD = "5-footed heron walks the long grey pier at dawn";
  /** A server whose tickets last 3 s, behind a gate; alice's identity key on machine `home`, under EXPIRING_PASSWORD. */
  async function expiring(home: string) {
    const { t, gate } = await gated({}, { ticketTtlMs: 3000 });
    useMachine(machine(home));
    await saveIdentity(pinGate(t, gate), "alice", cred(seed, "alice").identity, EXPIRING_PASSWORD);
    return { t, gate, password: EXPIRING_PASSWORD };
  }

  test("the ticket expires mid-chat: the server ends the session, the client asks for the password, logs in again and resumes", async () => {
    const { t, gate, password } = await expiring("expiry-alice");
    let asked = 0;
    const sink = new Collector();
    const a = reconnecting(gate.address, "alice", sink, async () => {
      asked++;
      return password;
    });
    await a.start();
    expect(asked).toBe(1); // no ticket on this machine yet
    const bob = await bobIn(t.port, "lobby");
    await sink.until("the session's expiry", () => sink.of("disconnected").some((e) => e.code === "session_expired"), 20_000);
    await bobSays(bob, [["lobby", "said while alice logs in again"]]);
    await sink.until("reconnected", () => sink.of("reconnected").length === 1, 20_000);
    expect(asked).toBe(2);
    expect(a.ended).toBe(false);
    expect(a.rooms).toEqual(["lobby"]);
    await sink.until("bob's line", () => seen(sink, "lobby").length === 1);
    expect(seen(sink, "lobby")).toEqual(["1 said while alice logs in again"]);
  }, NET);

  test("the ticket expires mid-chat and the first answer at the prompt is not the password (a chat line typed as the prompt appeared): asked again, then back in the room", async () => {
    const { t, gate, password } = await expiring("expiry-typo");
    const answers = [password, "see you all after lunch", password];
    let asked = 0;
    const sink = new Collector();
    const a = reconnecting(gate.address, "alice", sink, async () => answers[asked++]!);
    await a.start();
    const bob = await bobIn(t.port, "lobby");
    await sink.until("reconnected", () => sink.of("reconnected").length === 1, 30_000);
    expect(asked).toBe(3);
    expect(sink.of("local").map((e) => e.text)).toContain("wrong password for this account's identity key; 2 tries left");
    expect(a.ended).toBe(false);
    await bobSays(bob, [["lobby", "welcome back"]]);
    await sink.until("bob's line", () => seen(sink, "lobby").length === 1);
  }, NET);

  test("three wrong passwords at the mid-chat prompt end the client", async () => {
    const { t, gate, password } = await expiring("expiry-wrong");
    let asked = 0;
    const sink = new Collector();
    const a = reconnecting(gate.address, "alice", sink, async () => (asked++ === 0 ? password : "not it"));
    await a.start();
    await a.finished;
    expect(asked).toBe(4);
    expect(a.failureError?.code).toBe("identity_locked");
    expect(sink.of("local").map((e) => e.text).filter((x) => x.includes("left"))).toEqual([
      "wrong password for this account's identity key; 2 tries left",
      "wrong password for this account's identity key; 1 try left",
    ]);
  }, NET);

  const refusals: [string, () => Error][] = [
    ["no terminal to ask on (piped)", () => new SecureChatError("no_ticket", "no password from a pipe")],
    ["Ctrl-C at the prompt", () => new Error("interrupted")],
  ];
  for (const [why, refusal] of refusals) {
    test(`the ticket expires and no password comes (${why}): the client ends once, session_expired, without asking again`, async () => {
      const t = await serverFrom(seed, { chat: { ...DEFAULT_CHAT, flood: FAST }, ticketTtlMs: 2000 });
      cleanup.push(() => t.server.stop());
      useMachine(machine(`expiry-bot-${why.length}`));
      // A short-lived ticket, issued by this server.
      const bot = await registerWithTicket(t.port, `bot${why.length}`, "a bot's passphrase that is long enough to pass");
      install(t, bot);
      const sink = new Collector();
      let asked = 0;
      const a = reconnecting(t.address, bot.user, sink, () => {
        asked++;
        return Promise.reject(refusal());
      });
      await a.start();
      await a.finished;
      expect(asked).toBe(1);
      expect(a.failureCode).toBe("session_expired");
      expect(a.failure).toMatch(/session expired/);
      expect(a.failureError).toBeNull();
    }, NET);
  }
});

describe("catching up (read markers kept by the server, PROTOCOL.md §7.14)", () => {
  /** One run of alice's client in `room`: waits for `rooms` rooms, then quits; the events it delivered. */
  const run = async (t: TestServer, gate: Gate, m: Machine, room: string, rooms = 1) => {
    const { client, sink } = await resumingClient(t, gate, m, cred(seed, "alice"), room);
    await sink.until(`${rooms} rooms`, () => client.rooms.length === rooms && sink.of("history_end").length >= rooms);
    const current = client.room;
    await client.quit();
    return { sink, rooms: client.rooms, current };
  };
  /** What a person would see of a run, in order: the summaries and the room messages. */
  const shown = (sink: Collector): string[] =>
    sink.events.flatMap((e) =>
      e.type === "catchup" ? [`-- ${e.unread} new in ${e.room}, ${e.shown} shown`] : e.type === "message" ? [`${e.room} ${e.seq} ${e.text}`] : [],
    );

  test("a run shows one summary, then exactly what was missed since the last run; a run with nothing new shows nothing", async () => {
    const { t, gate } = await gated({});
    const laptop = machine("catchup-laptop");
    expect(shown((await run(t, gate, laptop, "lobby")).sink)).toEqual([]);
    const bob = await bobIn(t.port, "lobby");
    await bobSays(bob, [
      ["lobby", "m1"],
      ["lobby", "m2"],
      ["lobby", "m3"],
    ]);
    const second = await run(t, gate, laptop, "lobby");
    expect(shown(second.sink)).toEqual(["-- 3 new in lobby, 3 shown", "lobby 1 m1", "lobby 2 m2", "lobby 3 m3"]);
    const summary = second.sink.of("catchup")[0]!;
    expect(summary.since).toBeGreaterThan(0);
    expect(shown((await run(t, gate, laptop, "lobby")).sink)).toEqual([]);
  }, NET);

  test("more missed than the server's history: the summary counts them all, the newest kept are shown", async () => {
    const { t, gate } = await gated({ history: 3 });
    const laptop = machine("catchup-more");
    await run(t, gate, laptop, "lobby");
    const bob = await bobIn(t.port, "lobby");
    await bobSays(bob, [1, 2, 3, 4, 5].map((i): [string, string] => ["lobby", `m${i}`]));
    expect(shown((await run(t, gate, laptop, "lobby")).sink)).toEqual(["-- 5 new in lobby, 3 shown", "lobby 3 m3", "lobby 4 m4", "lobby 5 m5"]);
  }, NET);

  test("the user's other rooms are joined on start, caught up, and the first room stays current", async () => {
    const { t, gate } = await gated({});
    const { client, sink } = await resumingClient(t, gate, machine("catchup-rooms"), cred(seed, "alice"), "lobby");
    client.request({ type: "join", room: "ops" });
    await sink.until("ops", () => client.rooms.length === 2);
    await client.quit();
    const bob = await bobIn(t.port, "ops");
    await bobSays(bob, [
      ["ops", "deploy at 3"],
      ["ops", "done"],
    ]);
    // Another machine (the same key: one device today) knows nothing of ops; the server does. It quits at
    // once (a script with no input): leaving waits for the rooms it joins from `unread`, which it shows and marks read.
    const { client: other, sink: otherSink } = await resumingClient(t, gate, machine("catchup-rooms-2"), cred(seed, "alice"), "lobby");
    await other.quit();
    expect(other.rooms).toEqual(["lobby", "ops"]);
    expect(other.room).toBe("lobby");
    expect(shown(otherSink)).toEqual(["-- 2 new in ops, 2 shown", "ops 1 deploy at 3", "ops 2 done"]);
    expect(shown((await run(t, gate, machine("catchup-rooms-3"), "lobby", 2)).sink)).toEqual([]);
  }, NET);

  test("markers go to the server coalesced, not one request per message, and while the client runs", async () => {
    const { t, gate } = await gated({});
    let reads = 0;
    const handle = t.server.chat.handle.bind(t.server.chat);
    t.server.chat.handle = (m, req) => {
      if (req.type === "read") reads++;
      handle(m, req);
    };
    const { client, sink } = await resumingClient(t, gate, machine("catchup-coalesced"), cred(seed, "alice"), "lobby");
    const bob = await bobIn(t.port, "lobby");
    // One at a time: each reaches alice's client in a record of its own, and is shown before the next is said.
    for (let i = 1; i <= 20; i++) {
      await bobSays(bob, [["lobby", `m${i}`]]);
      await sink.until(`m${i}`, () => sink.said("lobby").length === i);
    }
    await sink.until("the marker at 20", () => t.server.markers.best("alice", "lobby")?.seq === 20, 15_000);
    expect(reads).toBeLessThan(10); // one per message would be 20
    await client.quit();
  }, NET);
});
