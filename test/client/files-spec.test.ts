/**
 * docs/PROTOCOL.md Appendix A (client files) and Appendix B (the server's
 * host key files) hold to the code: the examples printed there open with
 * the reference implementation, an independent reading of `USER.key`
 * written from the appendix alone gets the vectors' identity seed, and what
 * the reference writes has exactly the members, order and layout the
 * appendix gives. Another client that follows the appendix can then use an
 * account the CLI made, and the other way round.
 */
import { describe, expect, test } from "bun:test";
import { scryptSync } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { fromBase64, fromHex, toBase64, toHex, utf8 } from "../../src/bytes.ts";
import { identityPath, loadIdentity, saveIdentity } from "../../src/client/keystore.ts";
import { IGNORE_FILE_MAX, IGNORE_MAX, ignorePath, loadIgnores, saveIgnores } from "../../src/client/ignores.ts";
import { findKnownHost, knownHostsPath } from "../../src/client/known_hosts.ts";
import { loadTicket, saveTicket, ticketPath } from "../../src/client/tickets.ts";
import { ed25519Generate, sha256 } from "../../src/crypto/index.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { parseHostKeyPin } from "../../src/transcript/keys.ts";

const ROOT = join(import.meta.dir, "..", "..");
const SPEC = readFileSync(join(ROOT, "docs", "PROTOCOL.md"), "utf8");
const V = JSON.parse(readFileSync(join(ROOT, "test", "vectors", "protocol", "handshake.json"), "utf8"));
const SERVER = "127.0.0.1:7447";

/** The text of section `heading` of PROTOCOL.md, up to the next heading of any level. */
function section(heading: string): string {
  const start = SPEC.indexOf(`\n${heading}\n`);
  expect(start).toBeGreaterThan(0);
  const rest = SPEC.slice(start + heading.length + 2);
  const end = rest.search(/\n#{2,3} /);
  return end < 0 ? rest : rest.slice(0, end);
}

/** The fenced blocks of a section, in order. */
function blocks(text: string): string[] {
  return [...text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

const fixed = (name: string) => sha256(utf8(`securechat/1 test vector: ${name}`));

describe("PROTOCOL.md A.2: the identity key file", () => {
  const a2 = section("### A.2 The identity key: `USER.key`");
  const example = blocks(a2).find((b) => b.trimStart().startsWith("{"))!;

  test("the example opens with the reference keystore and holds the vectors' identity key", async () => {
    mkdirSync(dirname(identityPath(SERVER, V.inputs.user)), { recursive: true, mode: 0o700 });
    writeFileSync(identityPath(SERVER, V.inputs.user), example, { mode: 0o600 });
    const pair = await loadIdentity(SERVER, V.inputs.user, V.inputs.password);
    expect(toHex(pair.publicKey)).toBe(V.inputs.identity_key_public);
    expect(toHex(pair.secretKey)).toBe(V.inputs.identity_key_seed);
  });

  test("read as the appendix says, without the reference keystore: scrypt key, aad, seed", () => {
    const f = JSON.parse(example);
    expect(Object.keys(f)).toEqual(["version", "user", "server", "public_key", "kdf", "sealed"]);
    expect(Object.keys(f.kdf)).toEqual(["name", "N", "r", "p", "salt"]);
    // The salt and nonce the example says it used.
    expect(toHex(fromBase64(f.kdf.salt))).toBe(toHex(fixed("keystore salt").subarray(0, 16)));
    const sealed = fromBase64(f.sealed);
    expect(sealed.length).toBe(72);
    expect(toHex(sealed.subarray(0, 24))).toBe(toHex(fixed("keystore nonce").subarray(0, 24)));

    const k = new Uint8Array(scryptSync(utf8(V.inputs.password.normalize("NFKC")), fromBase64(f.kdf.salt), 32, { N: f.kdf.N, r: f.kdf.r, p: f.kdf.p, maxmem: 2 ** 28 }));
    expect(a2).toContain(`\`${toHex(k)}\``);
    const aad = `[${f.version},"${f.user}","${f.server}","${f.public_key}","${f.kdf.name}",${f.kdf.N},${f.kdf.r},${f.kdf.p},"${f.kdf.salt}"]`;
    expect(a2.replace(/\n\s*/g, "")).toContain(`\`${aad}\``);
    const seed = xchacha20poly1305(k, sealed.subarray(0, 24), utf8(aad)).decrypt(sealed.subarray(24));
    expect(toHex(seed)).toBe(V.inputs.identity_key_seed);
    // The aad binds the members: another server name does not open.
    const moved = aad.replace(SERVER, "127.0.0.1:7448");
    expect(() => xchacha20poly1305(k, sealed.subarray(0, 24), utf8(moved)).decrypt(sealed.subarray(24))).toThrow();
  });

  test("what the reference writes has the appendix's members, layout and sizes", async () => {
    const key = ed25519Generate();
    await saveIdentity("files-spec.test:7447", "bob", key, V.inputs.password);
    const text = readFileSync(identityPath("files-spec.test:7447", "bob"), "utf8");
    const f = JSON.parse(text);
    expect(text).toBe(`${JSON.stringify(f, null, 2)}\n`);
    expect(Object.keys(f)).toEqual(["version", "user", "server", "public_key", "kdf", "sealed"]);
    expect(f).toMatchObject({ version: 1, user: "bob", server: "files-spec.test:7447", public_key: toBase64(key.publicKey), kdf: { name: "scrypt", N: 131072, r: 8, p: 1 } });
    expect(fromBase64(f.kdf.salt).length).toBe(16);
    expect(fromBase64(f.sealed).length).toBe(72);
  });
});

describe("PROTOCOL.md A.3: the ticket file", () => {
  const a3 = section("### A.3 The session ticket: `USER.ticket`");
  const example = blocks(a3)[0]!;

  test("the example loads with the reference and holds the vectors' ticket and ticket key", () => {
    const path = ticketPath(SERVER, V.inputs.user);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, example, { mode: 0o600 });
    const t = loadTicket(SERVER, V.inputs.user, V.inputs.ticket_expires - 1)!;
    expect(t).not.toBeNull();
    expect(toHex(t.ticket)).toBe(V.inputs.ticket);
    expect(t.expiresAt).toBe(V.inputs.ticket_expires);
    expect(toHex(t.key.secretKey)).toBe(V.inputs.ticket_key_seed);
    expect(toHex(t.key.publicKey)).toBe(V.inputs.ticket_key_public);
    expect(a3).toContain(toBase64(fromHex(V.inputs.ticket_key_public)));
    // At its expiry it is treated as absent.
    expect(loadTicket(SERVER, V.inputs.user, V.inputs.ticket_expires)).toBeNull();
  });

  test("the reference writes exactly the example's line for the same ticket", () => {
    saveTicket("files-spec.test:7447", V.inputs.user, {
      ticket: fromHex(V.inputs.ticket),
      expiresAt: V.inputs.ticket_expires,
      key: ed25519Generate(fromHex(V.inputs.ticket_key_seed)),
    });
    expect(readFileSync(ticketPath("files-spec.test:7447", V.inputs.user), "utf8")).toBe(example.replace(SERVER, "files-spec.test:7447"));
  });
});

describe("PROTOCOL.md A.4 and Appendix B: known_hosts and the host key files", () => {
  const b = section("## Appendix B. The server's host key files");
  const [, secretLine, publicLine] = /host_key: +(.+)\nhost_key\.pub: +(.+)\n/.exec(blocks(b).at(-1)!)!;

  test("the example host_key is the vectors' host key, and host_key.pub its public line", () => {
    const dir = mkdtempSync(join(tmpdir(), "files-spec-"));
    writeFileSync(join(dir, "host_key"), `${secretLine}\n`, { mode: 0o600 });
    chmodSync(join(dir, "host_key"), 0o600);
    const { key, created } = loadOrCreateHostKey(dir);
    expect(created).toBe(false);
    expect(toHex(key.publicKey)).toBe(V.inputs.host_key_public);
    expect(publicLine).toBe(`ed25519 ${toBase64(key.publicKey)}`);
    const pin = parseHostKeyPin(publicLine!);
    expect("key" in pin && toHex(pin.key)).toBe(V.inputs.host_key_public);
  });

  test("a new host key's files have the appendix's form", () => {
    const dir = mkdtempSync(join(tmpdir(), "files-spec-"));
    const { key, created } = loadOrCreateHostKey(dir);
    expect(created).toBe(true);
    expect(readFileSync(join(dir, "host_key.pub"), "utf8")).toBe(`ed25519 ${toBase64(key.publicKey)}\n`);
    expect(readFileSync(join(dir, "host_key"), "utf8")).toBe(`securechat-host-key-v1 ${toBase64(key.secretKey)}\n`);
  });

  test("the known_hosts example pins the vectors' host key", () => {
    const line = blocks(section("### A.4 Pinned host keys: `known_hosts`"))[0]!;
    mkdirSync(dirname(knownHostsPath()), { recursive: true, mode: 0o700 });
    writeFileSync(knownHostsPath(), `# pinned by hand\n${line}`, { mode: 0o600 });
    const known = findKnownHost(SERVER)!;
    expect(toHex(known.key)).toBe(V.inputs.host_key_public);
    expect(known.line).toBe(2);
  });
});

describe("PROTOCOL.md A.5: the ignore list", () => {
  const a5 = section("### A.5 The ignore list: `USER.ignore`");
  const example = blocks(a5)[0]!;

  test("the example reads with the reference, and the reference writes it byte for byte", () => {
    const server = "files-spec-ignore.test:7447";
    mkdirSync(dirname(ignorePath(server, "alice")), { recursive: true, mode: 0o700 });
    writeFileSync(ignorePath(server, "alice"), example, { mode: 0o600 });
    const names = loadIgnores(server, "alice");
    expect([...names]).toEqual(["bob", "mallory"]);
    saveIgnores(server, "alice", ["mallory", "bob"]);
    expect(readFileSync(ignorePath(server, "alice"), "utf8")).toBe(example);
  });

  test("the limits the appendix gives are the reference's", () => {
    expect(a5).toContain(`more than ${IGNORE_MAX} distinct names`);
    expect(a5).toContain(`larger than ${IGNORE_FILE_MAX} bytes`);
  });
});

