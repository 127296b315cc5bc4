/**
 * A cleartext `error` that arrives before the server has proved its host key
 * (PROTOCOL.md §4.4 step 1, §10): the server's own refusals come this way,
 * and so can anything a man in the middle without the host key sends. The
 * review's attack: an error whose text, padded or wrapped, shows a forged
 * `hint:` telling the user to delete their known_hosts line.
 *
 * A fake server (a plain TCP listener) answers client_hello with such an
 * error; `register`, `login` and `chat` run as the user runs them (the CLI
 * in a subprocess). What the user must see: the error labelled as coming
 * from an unauthenticated peer, its text as one escaped ASCII string, no
 * `hint:` taken from it, and nothing secret sent.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { identityPath, saveIdentity } from "../../src/client/keystore.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { decodeMessage, encodeMessageBytes } from "../../src/protocol/messages.ts";
import { encodeFrame } from "../../src/protocol/framing.ts";
import { BLANK_RUN_MAX } from "../../src/text.ts";

const REPO = join(import.meta.dir, "..", "..");
const NET = 30_000;
const PASSWORD = "correct horse battery staple at dawn 42";
const FORGED_HINT = "hint: the server's key was replaced; remove line 1 of ~/.config/securechat/known_hosts and connect again";
/** What the attacker sends: padding to push the forged hint onto a row of its own, and a bidi override. */
const MESSAGE = `busy${" ".repeat(60)}${FORGED_HINT} \u202ereversed\u202c\u200b`;

let listener: TCPSocketListener<{ buf: number[] }>;
/** Every frame body each connection sent, in order. */
const received: Uint8Array[][] = [];

beforeAll(() => {
  listener = Bun.listen<{ buf: number[] }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { buf: [] };
        received.push([]);
      },
      data(socket: Socket<{ buf: number[] }>, chunk) {
        const frames = received.at(-1)!;
        socket.data.buf.push(...chunk);
        const buf = socket.data.buf;
        while (buf.length >= 4) {
          const n = ((buf[0]! << 24) | (buf[1]! << 16) | (buf[2]! << 8) | buf[3]!) >>> 0;
          if (buf.length < 4 + n) break;
          frames.push(Uint8Array.from(buf.splice(0, 4 + n).slice(4)));
          // In place of server_hello: a cleartext error, then close (PROTOCOL.md §4.10).
          socket.write(encodeFrame(encodeMessageBytes({ type: "error", code: "server_busy", message: MESSAGE }), MAX_FRAME_PRELOGIN));
          socket.end();
        }
      },
    },
  });
});

afterAll(() => {
  listener.stop(true);
});

const server = () => `127.0.0.1:${listener.port}`;

async function cli(args: string[], stdin: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, "src/main.ts", ...args], {
    cwd: REPO,
    env: { ...process.env },
    stdin: new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

function expectUnauthenticated(r: { code: number; stdout: string; stderr: string }): void {
  expect(r.code).toBe(1);
  const lines = r.stderr.split("\n");
  expect(lines.at(-1)).toBe("");
  const [first, ...hints] = lines.slice(0, -1);
  expect(first).toStartWith('securechat: error from an unauthenticated peer (not verified as the server): "server_busy: busy');
  // The peer's text, quoted and escaped: printable ASCII, bidi and zero-width as \u escapes, padding capped.
  expect(first).toContain(`busy${" ".repeat(BLANK_RUN_MAX)}hint: the server's key`);
  expect(first).toContain("\\u202ereversed\\u202c\\u200b\"");
  expect(first).toMatch(/^[\x20-\x7e]*$/);
  expect(first).not.toMatch(new RegExp(` {${BLANK_RUN_MAX + 1}}`));
  // One line for it; the only hint is the client's own, not derived from the text.
  expect(hints).toEqual(["hint: this came before the server proved its host key: it may be the server refusing, or anyone on the network path; try again later"]);
  expect(r.stderr).not.toContain("known_hosts and connect again\n");
  expect(r.stderr).not.toMatch(/^hint: the server's key/m);
}

describe("a cleartext error before server_hello", () => {
  test(
    "register: shown as from an unauthenticated peer, no forged hint; the password is never sent and no key is left behind",
    async () => {
      const before = received.length;
      const r = await cli(["register", "alice", "--server", server(), "--password-stdin", "--accept-new-host"], `${PASSWORD}\n`);
      expectUnauthenticated(r);
      const conns = received.slice(before);
      expect(conns.length).toBe(1);
      expect(conns[0]!.map((b) => decodeMessage(b).type)).toEqual(["client_hello"]);
      expect(existsSync(identityPath(server(), "alice"))).toBe(false);
    },
    NET,
  );

  test(
    "login and chat: the same",
    async () => {
      await saveIdentity(server(), "bob", ed25519Generate(), PASSWORD);
      for (const args of [
        ["login", "bob", "--server", server(), "--password-stdin", "--accept-new-host"],
        ["chat", "--user", "bob", "--server", server(), "--password-stdin", "--accept-new-host"],
      ]) {
        const before = received.length;
        const r = await cli(args, `${PASSWORD}\n`);
        expectUnauthenticated(r);
        expect(r.stdout).toBe("");
        const conns = received.slice(before);
        expect([args[0], conns.flat().map((b) => decodeMessage(b).type)]).toEqual([args[0], ["client_hello"]]);
      }
    },
    NET,
  );
});
