/**
 * The chaos harness: real `securechat serve` nodes and real `securechat chat
 * --json` users, driven from a test, with faults injected by signal.
 *
 * Everything runs from the built executable, dist/securechat, built here
 * when it is missing or older than anything under src/ (`ensureBinary`). The
 * binary rather than `bun run src/main.ts`: it is what an operator runs and
 * what the e2e scripts test, and each start skips transpiling the sources, so
 * the dozens of starts a chaos run makes (every user's registration, every
 * node restart) cost a process start, not a compile, on a loaded machine.
 *
 * Nodes (`Harness.node`): each has its own data directory and keeps its port
 * across restarts (the first start takes any free port), so a client that
 * pinned the node's key and holds a ticket for its address reconnects to the
 * restarted node as to the old one. `kill9()` (SIGKILL, then waits for the
 * exit), `stop()` (SIGSTOP), `cont()` (SIGCONT), `restart()` (a new process
 * with the same arguments, once the old one is gone), `term()` (SIGTERM, the
 * clean stop). Every start waits for the node's `listening` log line.
 *
 * Users (`Harness.user`): registered through the binary (`register
 * --password-stdin`, which also logs in), each with its own SECURECHAT_HOME;
 * `chat()` starts `chat --json` with `--server` given every node's address,
 * comma-separated, and stdin a pipe the test writes lines to. Every JSON
 * object the client prints is kept, in order (`events`), and so is every
 * stderr line (`diagnostics`).
 *
 * Engines: `{ engines: { postgres: true, redis: true } }` starts them from
 * test/engines.ts and gives each node SECURECHAT_DATABASE_URL and
 * SECURECHAT_REDIS_URL in its environment (never argv). Tests on one node
 * ask for none. A cluster's nodes share one host key (`clusterKey()`, given
 * to each as `--host-key`); `core()` names the node holding the writer
 * lease, from the nodes' logs; `transcript()` reads the cluster's transcript
 * from PostgreSQL as an auditor would (`transcript verify|export` with
 * SECURECHAT_DATABASE_URL). A user registered with `user(name, node)` has
 * that node first in its `--server` list, so it lands there and fails over
 * to the others in order.
 *
 * Every process the harness started is killed (SIGKILL) by `close()` and, as
 * a last resort, when the test process exits; a stopped one too.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { startPostgres, startRedis, type PostgresHandle, type RedisHandle } from "../engines.ts";
import { type ChatEvent, type Entry, type VerifyLine, jsonLines } from "./checker.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "securechat");

/** How long a node may take to print its listening line, and a user to register (generous: a loaded 2-core machine). */
const START_TIMEOUT_MS = 30_000;

/** The newest modification time under `dir` (ms). */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/securechat (`bun run build`) unless it exists and is newer than every source it is built from. */
export function ensureBinary(): string {
  let built = 0;
  try {
    built = statSync(BINARY).mtimeMs;
  } catch {
    built = 0;
  }
  const sources = Math.max(newest(join(ROOT, "src")), statSync(join(ROOT, "package.json")).mtimeMs, statSync(join(ROOT, "scripts", "build.ts")).mtimeMs);
  if (built > sources) return BINARY;
  const r = Bun.spawnSync(["bun", "run", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (!r.success) throw new Error(`bun run build failed:\n${r.stdout.toString()}${r.stderr.toString()}`);
  return BINARY;
}

/** Every process any harness started and has not seen end: killed at exit whatever happened. */
const live = new Set<Subprocess>();
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

function track(p: Subprocess): Subprocess {
  live.add(p);
  void p.exited.then(() => live.delete(p));
  return p;
}

/** Calls `fn` with each line of `stream` as it arrives (the last one even without its LF). */
async function eachLine(stream: ReadableStream<Uint8Array>, fn: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      fn(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  }
  rest += decoder.decode();
  if (rest !== "") fn(rest);
}

/** Polls `ready` every 20 ms until it holds; throws `what()` after `timeoutMs`. */
export async function waitUntil(ready: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`);
    await Bun.sleep(20);
  }
}

export interface HarnessOptions {
  /** Real engines for the nodes, from test/engines.ts. */
  engines?: { postgres?: boolean; redis?: boolean };
}

export class Harness {
  readonly work = mkdtempSync(join(tmpdir(), "securechat-chaos-"));
  readonly bin = ensureBinary();
  readonly nodes: Node[] = [];
  readonly users: User[] = [];
  postgres: PostgresHandle | null = null;
  redis: RedisHandle | null = null;
  /** Set by `failure()`: `close()` leaves the work directory for the events and logs a failure names. */
  keep = false;

  static async open(opts: HarnessOptions = {}): Promise<Harness> {
    const h = new Harness();
    if (opts.engines?.postgres) h.postgres = await startPostgres();
    if (opts.engines?.redis) h.redis = await startRedis();
    return h;
  }

  /** The environment every node gets: the engines' URLs when the harness has them. */
  nodeEnv(): Record<string, string> {
    return {
      ...(this.postgres ? { SECURECHAT_DATABASE_URL: this.postgres.url } : {}),
      ...(this.redis ? { SECURECHAT_REDIS_URL: this.redis.url } : {}),
    };
  }

  /** Starts a node: `serve --json --data DIR --port P ARGS`, and waits for its listening line. */
  async node(args: string[] = []): Promise<Node> {
    const name = `node${this.nodes.length + 1}`;
    const n = new Node(this, name, join(this.work, name), args);
    this.nodes.push(n);
    await n.start();
    return n;
  }

  /**
   * Registers NAME through the binary (which logs it in), in its own
   * SECURECHAT_HOME, with `--server` every node's address starting at
   * `first` (default: the first node): the cluster's name for this user, and
   * the node its clients connect to first.
   */
  async user(name: string, first: Node = this.nodes[0]!): Promise<User> {
    const at = this.nodes.indexOf(first);
    const servers = [...this.nodes.slice(at), ...this.nodes.slice(0, at)].map((n) => n.address).join(",");
    const u = new User(this, name, join(this.work, `home-${name}`), servers);
    const r = await u.run(["register", name, "--server", servers, "--password-stdin", "--accept-new-host"], `${u.password}\n`);
    if (r.code !== 0) throw new Error(`register ${name}: exit ${r.code}\n${r.stderr}`);
    this.users.push(u);
    return u;
  }

  /** The cluster's one host key, made once in the work directory: `--host-key FILE` for every node, and its public half for verify. */
  clusterKey(): { file: string; pub: string } {
    const dir = join(this.work, "cluster-key");
    loadOrCreateHostKey(dir);
    return { file: join(dir, "host_key"), pub: join(dir, "host_key.pub") };
  }

  /** The node whose current run holds the writer lease (its last core event is `core_elected`, of the highest epoch), or null. */
  core(): Node | null {
    let best: { node: Node; epoch: number } | null = null;
    for (const n of this.nodes) {
      if (!n.running) continue;
      const e = n.coreEpoch();
      if (e !== null && (best === null || e > best.epoch)) best = { node: n, epoch: e };
    }
    return best?.node ?? null;
  }

  /** Waits until a running node other than `not` is the core, and returns it. */
  async newCore(not: Node | null, timeoutMs: number): Promise<Node> {
    await waitUntil(() => this.core() !== null && this.core() !== not, timeoutMs, () => `no new core:\n${this.nodes.map((n) => `${n.name}:\n${n.tail(8)}`).join("\n")}`);
    return this.core()!;
  }

  /**
   * The cluster's transcript in PostgreSQL as an auditor reads it, through
   * the binary: `transcript verify --json --host-key PUB` and `transcript
   * export --stored`, the database named by SECURECHAT_DATABASE_URL.
   */
  async transcript(pub: string): Promise<{ verify: VerifyLine[]; verifyCode: number; entries: Entry[] }> {
    if (!this.postgres) throw new Error("the harness has no PostgreSQL");
    const env = { SECURECHAT_DATABASE_URL: this.postgres.url };
    const v = await this.run(["transcript", "verify", "--json", "--host-key", pub], env);
    const x = await this.run(["transcript", "export", "--stored"], env);
    if (x.code !== 0) throw new Error(`transcript export --database: exit ${x.code}\n${x.stderr}`);
    return { verify: jsonLines<VerifyLine>(v.stdout), verifyCode: v.code, entries: jsonLines<Entry>(x.stdout) };
  }

  /** `securechat ARGS` to its end, with `stdin`: its exit code and output. */
  async run(args: string[], env: Record<string, string> = {}, stdin = ""): Promise<{ code: number; stdout: string; stderr: string }> {
    const p = Bun.spawn([this.bin, ...args], { env: { ...process.env, NO_COLOR: "1", ...env }, stdin: new Blob([stdin]), stdout: "pipe", stderr: "pipe" });
    track(p);
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, stdout, stderr };
  }

  /**
   * A run's failure: every chat's events and every node's log are written to
   * the work directory, which `close()` then leaves in place; returns the
   * failure's text (why, the run's log, each chat's and node's last lines).
   */
  failure(why: string, log: string[], chats: Chat[]): string {
    for (const c of chats) writeFileSync(join(this.work, `${c.user}.events.jsonl`), c.events.map((e) => JSON.stringify(e)).join("\n"));
    for (const n of this.nodes) writeFileSync(join(this.work, `${n.name}.log`), n.log.join("\n"));
    this.keep = true;
    return [why, ...log, `each client's output, the nodes' logs and data: ${this.work}`, ...chats.map((c) => `${c.user}:\n${c.describe()}`), ...this.nodes.map((n) => `${n.name}:\n${n.tail()}`)].join("\n");
  }

  /** Kills every process still running (chats, nodes, stopped or not), stops the engines and removes the work directory. */
  async close(keep = this.keep): Promise<void> {
    for (const u of this.users) for (const c of u.chats) c.proc.kill("SIGKILL");
    for (const n of this.nodes) n.proc?.kill("SIGKILL");
    await Promise.all([...this.users.flatMap((u) => u.chats.map((c) => c.proc.exited)), ...this.nodes.map((n) => n.proc?.exited)]);
    await this.postgres?.stop();
    await this.redis?.stop();
    if (!keep) rmSync(this.work, { recursive: true, force: true });
  }
}

export class Node {
  proc: Subprocess | null = null;
  port = 0;
  /** Every line the node logged (stdout and stderr), across all its runs; a restart adds a `-- restart` line. */
  readonly log: string[] = [];
  /** Processes started for this node so far. */
  runs = 0;

  constructor(
    readonly harness: Harness,
    readonly name: string,
    readonly data: string,
    readonly args: string[],
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.name} is running already`);
    this.runs++;
    if (this.runs > 1) this.log.push(`-- ${this.name} run ${this.runs}`);
    let listening: string | null = null;
    const onLine = (line: string) => {
      this.log.push(line);
      const m = /"event":"listening","address":"127\.0\.0\.1:(\d+)"/.exec(line);
      if (m) listening = m[1]!;
    };
    const p = track(
      Bun.spawn([this.harness.bin, "serve", "--json", "--data", this.data, "--port", String(this.port), ...this.args], {
        env: { ...process.env, ...this.harness.nodeEnv() },
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      }),
    );
    this.proc = p;
    void eachLine(p.stdout as ReadableStream<Uint8Array>, onLine);
    void eachLine(p.stderr as ReadableStream<Uint8Array>, onLine);
    await waitUntil(() => listening !== null || p.exitCode !== null, START_TIMEOUT_MS, () => `${this.name} did not log "listening":\n${this.tail()}`);
    if (listening === null) throw new Error(`${this.name} exited ${p.exitCode} before listening:\n${this.tail()}`);
    this.port = Number(listening);
  }

  /** SIGKILL (the process cannot flush or clean up anything), then waits until it is gone. */
  async kill9(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill("SIGKILL");
    await this.proc.exited;
  }

  /** SIGSTOP: the process holds its sockets but does nothing. */
  stop(): void {
    this.proc?.kill("SIGSTOP");
  }

  cont(): void {
    this.proc?.kill("SIGCONT");
  }

  /** SIGTERM, the clean stop; resolves with the exit code. */
  async term(): Promise<number> {
    if (!this.proc) return 0;
    this.proc.kill("SIGTERM");
    return this.proc.exited;
  }

  /** Kills the node if it still runs (SIGKILL) and starts it again: same data, same port, same arguments. */
  async restart(): Promise<void> {
    if (this.running) await this.kill9();
    await this.start();
  }

  /**
   * The node's transcript as an auditor reads it, through the binary:
   * `transcript verify --json` pinned to the node's host key, and every
   * entry as stored (`transcript export --stored`).
   */
  async transcript(): Promise<{ verify: VerifyLine[]; verifyCode: number; entries: Entry[] }> {
    const h = this.harness;
    const v = await h.run(["transcript", "verify", join(this.data, "transcript"), "--json", "--host-key", join(this.data, "host_key.pub")]);
    const x = await h.run(["transcript", "export", "--data", this.data, "--stored"]);
    if (x.code !== 0) throw new Error(`transcript export of ${this.name}: exit ${x.code}\n${x.stderr}`);
    return { verify: jsonLines<VerifyLine>(v.stdout), verifyCode: v.code, entries: jsonLines<Entry>(x.stdout) };
  }

  /** The epoch of the writer lease this run of the node holds (its last core event is `core_elected`), or null. */
  coreEpoch(): number | null {
    for (let i = this.log.length - 1; i >= 0; i--) {
      const line = this.log[i]!;
      if (line.startsWith(`-- ${this.name} run `)) return null;
      if (line.includes('"event":"core_lost"')) return null;
      const m = /"event":"core_elected".*"epoch":(\d+)/.exec(line);
      if (m) return Number(m[1]);
    }
    return null;
  }

  /** The last lines of its log, to explain a failure. */
  tail(n = 30): string {
    return this.log.slice(-n).join("\n");
  }
}

export class User {
  /** Random, given on stdin only. */
  readonly password = `chaos-${crypto.randomUUID()}`;
  readonly chats: Chat[] = [];

  constructor(
    readonly harness: Harness,
    readonly name: string,
    readonly home: string,
    /** Its `--server` list: the cluster's addresses, the node it lands on first. */
    readonly servers: string,
  ) {}

  run(args: string[], stdin = ""): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.harness.run(args, { SECURECHAT_HOME: this.home }, stdin);
  }

  /** `chat -u NAME --server ITS_LIST --room ROOM --json`, stdin a pipe. */
  chat(room: string, args: string[] = []): Chat {
    const proc = track(
      Bun.spawn([this.harness.bin, "chat", "-u", this.name, "--server", this.servers, "--room", room, "--json", ...args], {
        env: { ...process.env, NO_COLOR: "1", SECURECHAT_HOME: this.home },
        stdin: "pipe",
        stdout: "pipe",
        stderr: "pipe",
      }),
    );
    const c = new Chat(this.name, proc as Subprocess<"pipe", "pipe", "pipe">);
    this.chats.push(c);
    return c;
  }
}

export class Chat {
  /** Every JSON object printed on stdout, in order. */
  readonly events: ChatEvent[] = [];
  /** Every line printed on stderr. */
  readonly diagnostics: string[] = [];
  /** stdout lines that were not JSON objects (there should be none). */
  readonly garbage: string[] = [];
  readonly done: Promise<number>;
  #open = true;

  constructor(
    readonly user: string,
    readonly proc: Subprocess<"pipe", "pipe", "pipe">,
  ) {
    const out = eachLine(proc.stdout, (line) => {
      try {
        const v = JSON.parse(line) as unknown;
        if (v && typeof v === "object" && typeof (v as ChatEvent).type === "string") this.events.push(v as ChatEvent);
        else this.garbage.push(line);
      } catch {
        this.garbage.push(line);
      }
    });
    const err = eachLine(proc.stderr, (line) => this.diagnostics.push(line));
    // Done once the process has exited and its output has been read to the end.
    this.done = Promise.all([proc.exited, out, err]).then(([code]) => code);
  }

  /** Writes one line to the client's stdin (a message, or a /command). */
  line(text: string): void {
    if (!this.#open) throw new Error(`${this.user}: stdin is closed`);
    this.proc.stdin.write(`${text}\n`);
    void this.proc.stdin.flush();
  }

  /** Closes stdin: the client leaves once every line is acknowledged (or given up), and exits. */
  async end(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    await this.proc.stdin.end();
  }

  /** The rooms the client was told it joined (`room` events), in order. */
  get joined(): string[] {
    return [...new Set(this.events.filter((e) => e.type === "room").map((e) => e.room as string))];
  }

  /** Waits until an event satisfies `pred` (or the client ends first: then throws). */
  async waitFor(pred: (e: ChatEvent) => boolean, timeoutMs: number, what: string): Promise<void> {
    await waitUntil(
      () => this.events.some(pred) || this.proc.exitCode !== null,
      timeoutMs,
      () => `${this.user}: ${what}\n${this.describe()}`,
    );
    if (!this.events.some(pred)) throw new Error(`${this.user} exited ${this.proc.exitCode} before ${what}\n${this.describe()}`);
  }

  /** The last events and diagnostics, to explain a failure. */
  describe(n = 15): string {
    const ev = this.events.slice(-n).map((e) => `  ${JSON.stringify(e)}`);
    const diag = this.diagnostics.slice(-n).map((l) => `  stderr: ${l}`);
    return [...ev, ...diag].join("\n");
  }
}

/** The highest seq a chat knows of in `room` (messages shown, acks of its own lines). */
export function lastSeen(c: Chat, room: string): number {
  const sent = new Map<number, string>();
  let n = 0;
  for (const e of c.events) {
    if (e.type === "sent" && typeof e.room === "string") sent.set(e.id as number, e.room);
    if (e.type === "message" && e.room === room) n = Math.max(n, e.seq as number);
    if (e.type === "ack" && sent.get(e.id as number) === room) n = Math.max(n, e.seq as number);
  }
  return n;
}

/** Lines sent that got neither an ack nor an `unsent`: still waiting. */
export function waiting(c: Chat): number {
  const open = new Set<number>();
  for (const e of c.events) {
    if (e.type === "sent") open.add(e.id as number);
    if (e.type === "ack" || e.type === "nack" || e.type === "unsent") open.delete(e.id as number);
  }
  return open.size;
}

/**
 * The end of a run: waits until every line is answered (ack, or given up
 * after a loss) and every member has been shown each of its rooms up to the
 * room's last seq, then closes every client's stdin and waits for it to
 * exit; resolves with their exit codes. `fail` builds a timeout's message.
 */
export async function settle(plan: { chat: Chat; rooms: string[] }[], timeoutMs: number, fail: (why: string) => string): Promise<number[]> {
  const chats = plan.map((p) => p.chat);
  await waitUntil(() => chats.every((c) => waiting(c) === 0), timeoutMs, () => fail("lines still waiting for an answer"));
  const rooms = [...new Set(plan.flatMap((p) => p.rooms))];
  const last = new Map(rooms.map((r) => [r, Math.max(...chats.map((c) => lastSeen(c, r)))]));
  await waitUntil(
    () => plan.every(({ chat, rooms }) => rooms.every((r) => lastSeen(chat, r) >= last.get(r)!)),
    timeoutMs,
    () => fail(`members not caught up with ${JSON.stringify([...last])}`),
  );
  await Promise.all(chats.map((c) => c.end()));
  return Promise.all(chats.map((c) => c.done));
}

/** Starts each chat of the plan in its first room and joins the others, waiting for each `room` answer. */
export async function joinAll(plan: { chat: Chat; rooms: string[] }[], timeoutMs: number): Promise<void> {
  for (const { chat, rooms } of plan) {
    await chat.waitFor((e) => e.type === "room" && e.room === rooms[0], timeoutMs, `joined ${rooms[0]}`);
    for (const r of rooms.slice(1)) {
      chat.line(`/join ${r}`);
      await chat.waitFor((e) => e.type === "room" && e.room === r, timeoutMs, `joined ${r}`);
    }
  }
}

/**
 * Sends numbered lines on a steady pace: line k goes to `rooms[k % rooms.length]`
 * (a `/switch` before it when the client is in several), its text
 * `USER ROOM #k`, unique in the run. `stop()` ends the pace; `sent` is the
 * number of lines written.
 */
export class Sender {
  sent = 0;
  #timer: ReturnType<typeof setInterval>;

  constructor(
    readonly chat: Chat,
    readonly rooms: string[],
    everyMs: number,
  ) {
    this.#timer = setInterval(() => this.#one(), everyMs);
  }

  #one(): void {
    if (this.chat.proc.exitCode !== null) return this.stop();
    const room = this.rooms[this.sent % this.rooms.length]!;
    if (this.rooms.length > 1) this.chat.line(`/switch ${room}`);
    this.chat.line(`${this.chat.user} ${room} #${this.sent}`);
    this.sent++;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
