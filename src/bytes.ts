/**
 * Byte helpers shared by every layer: concatenation, UTF-8, and strict
 * base64 (RFC 4648 §4, padded). Strict means one encoding per value: a
 * decoder that accepts several spellings of the same bytes lets an attacker
 * change a message without changing what it means, which breaks anything
 * that hashes or compares the text.
 */
import { SecureChatError } from "./errors.ts";

const utf8Encoder = new TextEncoder();
const utf8StrictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function utf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Decodes UTF-8, throwing `utf8_invalid` on any malformed sequence. */
export function fromUtf8(b: Uint8Array): string {
  try {
    return utf8StrictDecoder.decode(b);
  } catch (cause) {
    throw new SecureChatError("utf8_invalid", "utf8: invalid byte sequence", { cause });
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function u32be(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, false);
  return b;
}

export function u64be(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, false);
  return b;
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new SecureChatError("hex_invalid", "hex: not an even-length hex string");
  }
  return new Uint8Array(Buffer.from(s, "hex"));
}

export function toBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes canonical padded base64. Rejects missing padding, URL-safe letters,
 * whitespace, and non-zero trailing bits (RFC 4648 §3.5: "MAY reject"; we do).
 * With `length`, also rejects any other decoded length.
 */
export function fromBase64(s: string, length?: number): Uint8Array {
  if (!BASE64_RE.test(s)) {
    throw new SecureChatError("base64_invalid", "base64: not canonical padded base64");
  }
  // The decoded bytes may be a key or a ticket: copy them out of Buffer's
  // memory and wipe that, so only the copy we return (and can wipe) is left.
  const decoded = Buffer.from(s, "base64");
  const b = new Uint8Array(decoded);
  decoded.fill(0);
  if (toBase64(b) !== s) {
    throw new SecureChatError("base64_invalid", "base64: non-canonical encoding");
  }
  if (length !== undefined && b.length !== length) {
    throw new SecureChatError("base64_length", `base64: decoded ${b.length} bytes, expected ${length}`);
  }
  return b;
}
