/**
 * The keys an auditor handles (docs/TRANSCRIPT.md §4, §5):
 *
 *   auditor key   X25519 pair; the server seals message bodies to the public
 *                 half (`serve --auditor-key`), the auditor opens them with
 *                 the secret half (`transcript export --identity`).
 *                   secret file: "securechat-auditor-key-v1 BASE64\n" (mode 0600)
 *                   public line: "securechat-auditor-pub-v1 BASE64"
 *   host key pin  the server's Ed25519 public key that checkpoints must be
 *                 signed with (`--host-key`): base64, "ed25519 BASE64" (the
 *                 host_key.pub line), a known_hosts line, a path to a file
 *                 holding one of these, or a SHA256: fingerprint.
 *
 * Also the Unsealer, which opens sealed bodies while a transcript is read.
 */
import { closeSync, existsSync, fsyncSync, linkSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fromBase64, toBase64, toHex } from "../bytes.ts";
import { constantTimeEqual, randomBytes, x25519, x25519Generate } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { syncDir } from "../paths.ts";
import { type Entry, openBody, unwrapFileKey } from "./format.ts";

export const AUDITOR_KEY_HEADER = "securechat-auditor-key-v1";
export const AUDITOR_PUB_HEADER = "securechat-auditor-pub-v1";
const HOST_PUB_HEADER = "ed25519";
/** Key files are a line or two; anything bigger is not one. */
const MAX_KEY_FILE_BYTES = 4096;

function fail(code: string, message: string, cause?: unknown): never {
  throw new SecureChatError(code, `auditor key: ${message}`, cause === undefined ? undefined : { cause });
}

export function auditorPublicLine(publicKey: Uint8Array): string {
  return `${AUDITOR_PUB_HEADER} ${toBase64(publicKey)}`;
}

/** A low-order point would make every wrap key predictable (x25519.ts refuses the all-zero output). */
function checkAuditorPublic(pub: Uint8Array, what: string): Uint8Array {
  try {
    x25519(randomBytes(32), pub);
  } catch (cause) {
    fail("auditor_key_invalid", `${what} is not a usable X25519 public key`, cause);
  }
  return pub;
}

function readSmall(path: string): string {
  if (statSync(path).size > MAX_KEY_FILE_BYTES) fail("auditor_key_invalid", `${path} is too big to be a key file`);
  return readFileSync(path, "utf8");
}

/**
 * The auditor's public key from `serve --auditor-key`: the public line, bare
 * base64, or a path to a file holding either.
 */
export function parseAuditorPublic(s: string): Uint8Array {
  const text = s.trim();
  const words = text.split(/\s+/);
  if (words.length === 2 && words[0] === AUDITOR_PUB_HEADER) return decodeKey(words[1]!, "the auditor public key", true);
  if (words.length === 1 && /^[A-Za-z0-9+/]{43}=$/.test(text)) return decodeKey(text, "the auditor public key", true);
  if (words[0] === AUDITOR_KEY_HEADER) fail("auditor_key_secret", "that is the auditor's secret key; give the public line (securechat-auditor-pub-v1 ...)");
  if (existsSync(s)) {
    const inner = readSmall(s).trim();
    const w = inner.split(/\s+/);
    if (w[0] === AUDITOR_KEY_HEADER) fail("auditor_key_secret", `${s} holds the auditor's secret key; give the public line or a file holding it`);
    if ((w.length === 2 && w[0] === AUDITOR_PUB_HEADER) || (w.length === 1 && /^[A-Za-z0-9+/]{43}=$/.test(inner))) return parseAuditorPublic(inner);
    fail("auditor_key_invalid", `${s} does not hold a "${AUDITOR_PUB_HEADER} BASE64" line`);
  }
  fail("auditor_key_invalid", `expected "${AUDITOR_PUB_HEADER} BASE64", base64 of 32 bytes, or a file holding either`);
}

function decodeKey(b64: string, what: string, isPublic: boolean): Uint8Array {
  let k: Uint8Array;
  try {
    k = fromBase64(b64, 32);
  } catch (cause) {
    fail("auditor_key_invalid", `${what} is not base64 of 32 bytes`, cause);
  }
  return isPublic ? checkAuditorPublic(k, what) : k;
}

/** The auditor's secret X25519 key from its file (`transcript export --identity`). */
export function loadAuditorIdentity(path: string): Uint8Array {
  if (!existsSync(path)) fail("auditor_key_missing", `${path} does not exist`);
  const words = readSmall(path).trim().split(/\s+/);
  if (words[0] === AUDITOR_PUB_HEADER) fail("auditor_key_public", `${path} holds the public key; --identity needs the secret key file`);
  if (words.length !== 2 || words[0] !== AUDITOR_KEY_HEADER) fail("auditor_key_invalid", `${path} is not a securechat auditor key (expected "${AUDITOR_KEY_HEADER} BASE64")`);
  return decodeKey(words[1]!, `${path}`, false);
}

/**
 * Makes an auditor key pair and writes the secret to `path` (mode 0600).
 * Never overwrites: the file is written under a temporary name and linked
 * into place, which fails if `path` exists, so a crash leaves no half key.
 */
export function createAuditorKey(path: string): { publicKey: Uint8Array } {
  const pair = x25519Generate();
  const tmp = join(dirname(path), `.${toHex(randomBytes(6))}.auditor-key.tmp`);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    const bytes = Buffer.from(`${AUDITOR_KEY_HEADER} ${toBase64(pair.secretKey)}\n`, "utf8");
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    bytes.fill(0);
    fsyncSync(fd);
    closeSync(fd);
    linkSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    if (isNodeError(e, "EEXIST")) fail("auditor_key_exists", `${path} already exists; not overwriting it`, e);
    throw e;
  } finally {
    pair.secretKey.fill(0);
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
  }
  syncDir(dirname(path));
  return { publicKey: pair.publicKey };
}

function isNodeError(e: unknown, code: string): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === code;
}

export type HostKeyPin = { key: Uint8Array } | { fingerprint: string };

const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** The `ed25519 BASE64` of a line of host_key.pub or known_hosts (`SERVER ed25519 BASE64`), or bare base64. */
function pinnedBase64(text: string): string | null {
  const words = text.split(/\s+/);
  if (words.length === 1 && /^[A-Za-z0-9+/]{43}=$/.test(text)) return text;
  if (words.length === 2 && words[0] === HOST_PUB_HEADER) return words[1]!;
  if (words.length === 3 && words[1] === HOST_PUB_HEADER && !words[0]!.startsWith("#")) return words[2]!;
  return null;
}

function pinOf(b64: string): HostKeyPin {
  try {
    return { key: fromBase64(b64, 32) };
  } catch (cause) {
    throw new SecureChatError("host_key_pin", "host key: not base64 of a 32-byte Ed25519 public key", { cause });
  }
}

/**
 * `--host-key`: base64 of 32 bytes, "ed25519 BASE64" (host_key.pub's line),
 * a line of a client's known_hosts ("HOST:PORT ed25519 BASE64",
 * docs/PROTOCOL.md A.4), a path to a file holding one of these (host_key.pub,
 * or a known_hosts with one server's line), or a SHA256: fingerprint (then
 * the key itself is taken from the transcript and must match it).
 */
export function parseHostKeyPin(s: string): HostKeyPin {
  const text = s.trim();
  if (text.startsWith("SHA256:")) {
    if (!FINGERPRINT_RE.test(text)) throw new SecureChatError("host_key_pin", "host key: a fingerprint is SHA256: and 43 base64 characters");
    return { fingerprint: text };
  }
  const b64 = pinnedBase64(text);
  if (b64 !== null) return pinOf(b64);
  if (existsSync(s)) {
    if (statSync(s).size > MAX_KEY_FILE_BYTES) throw new SecureChatError("host_key_pin", `host key: ${s} is too big to be host_key.pub or known_hosts`);
    const inner = readFileSync(s, "utf8").trim();
    if (inner.startsWith("securechat-host-key-v1")) throw new SecureChatError("host_key_pin", `host key: ${s} is the server's secret key; give host_key.pub`);
    // known_hosts: its comments and blank lines are skipped; one server's line must remain.
    const lines = inner.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
    const keys = lines.map(pinnedBase64);
    const only = keys.length === 1 ? keys[0] : null;
    if (only) return pinOf(only);
    if (keys.length > 1 && keys.every((k) => k !== null)) {
      throw new SecureChatError("host_key_pin", `host key: ${s} holds ${keys.length} servers' keys; pass the line of this server ("HOST:PORT ed25519 BASE64")`);
    }
    throw new SecureChatError("host_key_pin", `host key: ${s} does not hold an "ed25519 BASE64" or known_hosts line`);
  }
  throw new SecureChatError("host_key_pin", 'host key: expected base64, "ed25519 BASE64" (host_key.pub), a known_hosts line "HOST:PORT ed25519 BASE64", a file holding one, or a SHA256: fingerprint');
}

/**
 * Opens sealed bodies as a transcript is read: each `seal_key` entry wrapped
 * to this identity yields a file key, kept by its seq (one per transcript
 * file); a sealed message names that seq in `key_seq`.
 */
export class Unsealer {
  readonly publicKey: Uint8Array;
  readonly #identity: Uint8Array;
  readonly #keys = new Map<number, Uint8Array>();
  /** seal_key entries wrapped to some other auditor key. */
  readonly #foreign = new Set<number>();
  /** Bodies opened, and bodies left sealed because their key is another auditor's. */
  opened = 0;
  skipped = 0;

  /** Keeps its own copy of `identity`, wiped by wipe(). */
  constructor(identity: Uint8Array) {
    this.#identity = identity.slice();
    this.publicKey = x25519Generate(identity).publicKey;
  }

  /** Remembers the file key of a seal_key entry addressed to this identity. */
  sealKey(e: Entry): void {
    const recipient = fromBase64(e.recipient as string);
    if (!constantTimeEqual(recipient, this.publicKey)) {
      this.#foreign.add(e.seq);
      return;
    }
    try {
      this.#keys.set(e.seq, unwrapFileKey(this.#identity, e));
    } catch (cause) {
      throw new SecureChatError("seal_key_unwrap", `transcript: seal_key seq ${e.seq} is addressed to this identity but does not open`, { cause });
    }
  }

  /**
   * The text of a sealed message/direct entry; null when its file key was
   * wrapped to another auditor. Throws `sealed_open` when it does not open.
   */
  open(e: Entry): string | null {
    const keySeq = e.key_seq as number;
    if (this.#foreign.has(keySeq)) {
      this.skipped++;
      return null;
    }
    const key = this.#keys.get(keySeq);
    if (!key) throw new SecureChatError("sealed_key_seq", `transcript: seq ${e.seq} is sealed under key_seq ${keySeq}, which is no seal_key entry before it`);
    try {
      const text = openBody(key, e.seq, e.sealed as string);
      this.opened++;
      return text;
    } catch (cause) {
      throw new SecureChatError("sealed_open", `transcript: the sealed body of seq ${e.seq} does not open with its file key`, { cause });
    }
  }

  wipe(): void {
    for (const k of this.#keys.values()) k.fill(0);
    this.#keys.clear();
    this.#identity.fill(0);
  }
}
