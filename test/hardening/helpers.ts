/**
 * Helpers for the hardening tests: the real `securechat serve` as a
 * subprocess (started, awaited, killed by its handle), raw protocol sessions
 * that read every message of a coalesced record, records sealed by hand
 * (the real sealer refuses empty plaintexts), and the transcript read back
 * as seq → hash.
 *
 * Every wait is bounded.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ed25519Generate, aesGcmSeal } from "../../src/crypto/index.ts";
import { recordNonce } from "../../src/protocol/channel.ts";
import { frameHeader } from "../../src/protocol/framing.ts";
import { FRAME_HEADER_LENGTH } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage } from "../../src/protocol/messages.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder } from "../../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import type { SessionKeys } from "../../src/protocol/session.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { SecureChatError } from "../../src/errors.ts";
import type { Socket } from "bun";
import { type RawSession, type RawUser, cleartextFrame, rawSession, sleep } from "../server/helpers.ts";

export const REPO = join(import.meta.dir, "..", "..");

export type Proc = ReturnType<typeof Bun.spawn<"ignore", "pipe", "pipe">>;

export interface ServerProc {
  proc: Proc;
  port: number;
  lines: string[];
  stderr: Promise<string>;
}

/** Reads the process's stdout as lines, in the background, into `lines`. */
function collectLines(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
  return (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    if (buf) lines.push(buf);
  })();
}

async function waitForLine(lines: string[], pred: (j: Record<string, unknown>) => boolean, timeoutMs: number, exited: () => boolean): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const l of lines) {
      try {
        const j = JSON.parse(l) as Record<string, unknown>;
        if (pred(j)) return j;
      } catch {
        // not JSON
      }
    }
    if (exited()) throw new Error(`test: server exited before the matching log line; got:\n${lines.join("\n")}`);
    if (Date.now() > deadline) throw new Error(`test: no matching log line within ${timeoutMs} ms; got:\n${lines.join("\n")}`);
    await sleep(20);
  }
}

/** `securechat serve --port 0 --data DIR --json ARGS…`, resolved once it logs `listening`. */
export async function spawnServer(data: string, args: string[] = [], procs: Proc[] = []): Promise<ServerProc> {
  const proc = Bun.spawn([process.execPath, "src/main.ts", "serve", "--port", "0", "--data", data, "--json", ...args], {
    cwd: REPO,
    env: { ...process.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  procs.push(proc);
  const lines: string[] = [];
  void collectLines(proc.stdout, lines);
  const stderr = new Response(proc.stderr).text();
  const listening = await waitForLine(lines, (j) => j.event === "listening", 15_000, () => proc.exitCode !== null || proc.signalCode !== null);
  const port = Number(/:(\d+)$/.exec(String(listening.address))![1]);
  return { proc, port, lines, stderr };
}

/** Kills by the handle (if still running) and waits, bounded. */
export async function killProc(proc: Proc, signal: "SIGKILL" | "SIGTERM" = "SIGKILL", timeoutMs = 10_000): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
  const r = await Promise.race([proc.exited, sleep(timeoutMs).then(() => "timeout" as const)]);
  if (r === "timeout") {
    proc.kill("SIGKILL");
    await Promise.race([proc.exited, sleep(5000)]);
  }
}

/** Resident set size of a process in bytes, from /proc/PID/status. */
export function vmRss(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`test: no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

export const MiB = 1024 * 1024;

/** Every message of the next record from the server (the server coalesces several per record). */
export async function receiveAll(s: RawSession, timeoutMs = 10_000): Promise<Message[]> {
  return s.channel.open(await s.conn.next(timeoutMs));
}

export const PASSWORD = "a shared but decent passphrase";

/** Registers `user` on a fresh session and returns the logged-in session (or throws with what came back). */
export async function registerSession(port: number, user: string, password = PASSWORD): Promise<{ s: RawSession; u: RawUser }> {
  const identity = ed25519Generate();
  const s = await rawSession(port);
  try {
    s.send({ type: "register", user, identity_key: identity.publicKey, sig: s.sign(identity), password });
    const m = await s.receive(15_000);
    if (m.type !== "welcome") throw new Error(`test: register ${user}: ${JSON.stringify(m)}`);
  } catch (e) {
    s.conn.destroy();
    throw e;
  }
  return { s, u: { user, password, identity } };
}

/** Password login on a fresh session; returns the logged-in session. */
export async function loginSession(port: number, u: RawUser): Promise<RawSession> {
  const s = await rawSession(port);
  try {
    s.send({ type: "login", user: u.user, sig: s.sign(u.identity), password: u.password });
    const m = await s.receive(15_000);
    if (m.type !== "welcome") throw new Error(`test: login ${u.user}: ${JSON.stringify(m)}`);
  } catch (e) {
    s.conn.destroy();
    throw e;
  }
  return s;
}

/**
 * A record sealed correctly with the session's next client→server key and
 * nonce, but with a plaintext of `length` bytes (0 or 1: below the minimum,
 * which RecordSealer refuses to produce). Advances nothing: only valid while
 * the client's key is still epoch 0 and it sends nothing else through the
 * channel afterwards.
 */
export function shortRecord(s: RawSession, length: 0 | 1, n: number = s.channel.sealer.count): Uint8Array {
  if (s.channel.sealer.epoch !== 0) throw new Error("test: shortRecord only knows the first key");
  const plaintext = new Uint8Array(length).fill(0x20);
  const header = frameHeader(plaintext.length + 16);
  const body = aesGcmSeal(s.keys.c2s, recordNonce(n), plaintext, header);
  const frame = new Uint8Array(FRAME_HEADER_LENGTH + body.length);
  frame.set(header, 0);
  frame.set(body, FRAME_HEADER_LENGTH);
  return frame;
}

/** seq → { hash, type } of every complete line of the transcript files in `dir`. */
export function transcriptEntries(dir: string): Map<number, { hash: string; type: string; line: string }> {
  const out = new Map<number, { hash: string; type: string; line: string }>();
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".jsonl")).sort()) {
    const text = readFileSync(join(dir, name), "utf8");
    const lines = text.split("\n");
    lines.pop(); // the part after the last LF: empty, or a torn tail
    for (const line of lines) {
      try {
        const e = JSON.parse(line) as { seq: number; hash: string; type: string };
        out.set(e.seq, { hash: e.hash, type: e.type, line });
      } catch {
        // not an entry; verifyTranscript will say so
      }
    }
  }
  return out;
}

/**
 * A logged-in session on a socket the test can stop reading (`pause`), as a
 * client that never reads its acks would; writes wait for drain, so a
 * megabyte-sized flood is sent whole.
 */
export class PausableSession {
  readonly #decoder = new FrameDecoder(MAX_FRAME);
  readonly frames: Uint8Array[] = [];
  #socket!: Socket<undefined>;
  #drain: (() => void) | null = null;
  #wake: (() => void) | null = null;
  closedAt: number | null = null;
  channel!: SecureChannel;
  keys!: SessionKeys;

  static async register(port: number, user: string, password = PASSWORD): Promise<PausableSession> {
    const c = new PausableSession();
    const onClose = (): void => {
      c.closedAt ??= Date.now();
      c.#wakeUp();
      c.#drain?.();
    };
    c.#socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, chunk) {
          for (const body of c.#decoder.push(chunk)) c.frames.push(body);
          c.#wakeUp();
        },
        drain() {
          const d = c.#drain;
          c.#drain = null;
          d?.();
        },
        close: onClose,
        end: onClose,
        error: onClose,
        connectError: onClose,
      },
    });
    try {
      const hs = new ClientHandshake();
      await c.writeAll(cleartextFrame(hs.hello()));
      c.keys = hs.receive(decodeMessage(await c.next()));
      c.channel = new SecureChannel(c.keys, "client", MAX_FRAME_PRELOGIN);
      const identity = ed25519Generate();
      await c.writeAll(c.channel.seal([{ type: "register", user, identity_key: identity.publicKey, sig: signClientAuth(identity.secretKey, c.keys), password }]));
      const m = c.channel.open(await c.next(15_000));
      if (m[0]?.type !== "welcome") throw new Error(`test: register ${user}: ${JSON.stringify(m)}`);
    } catch (e) {
      c.destroy();
      throw e;
    }
    return c;
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async next(timeoutMs = 10_000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.closedAt !== null) throw new SecureChatError("connection_closed", "test: server closed the connection");
      const left = deadline - Date.now();
      if (left <= 0) throw new SecureChatError("test_timeout", `test: no frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Writes all of `bytes`, waiting for drain as needed; false if the connection closed first. */
  async writeAll(bytes: Uint8Array, timeoutMs = 20_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let off = 0;
    while (off < bytes.length) {
      if (this.closedAt !== null) return false;
      const n = this.#socket.write(bytes.subarray(off));
      if (n > 0) off += n;
      if (off < bytes.length) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`test: write stalled at ${off}/${bytes.length} bytes`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 50));
          this.#drain = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    }
    return true;
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  destroy(): void {
    this.#socket?.terminate();
  }
}
