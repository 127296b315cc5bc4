/**
 * The secure channel (src/protocol/channel.ts): AES-256-GCM records with a
 * counter nonce and one-way rekeying. What an attacker on the wire sees:
 * any flipped bit, replayed, dropped, reordered or truncated record stops the
 * stream at that record and nothing after it is ever delivered; a key that is
 * captured later does not open earlier records.
 *
 * Bit flips and stream edits go through the whole receive path a connection
 * uses: FrameDecoder(MAX_FRAME) → RecordOpener.open. A flip in a record's
 * body must give `record_auth_failed` at that record. A flip in its 4-byte
 * header changes the length L the decoder reads; the outcome is determined:
 *   L' = 0                    → frame_empty        (decoder)
 *   L' > MAX_FRAME            → frame_too_large    (decoder)
 *   L' > bytes left in stream → "incomplete": the stream ends mid-frame and
 *                               nothing more is delivered (pending > 0)
 *   otherwise                 → record_auth_failed (the body is cut short or
 *                               runs into the next frame; the header is AAD)
 * That table is exact when the stream is fed one byte at a time (the decoder
 * hands out the wrong-length body as soon as it is complete). Fed one
 * original frame per push, a body cut short leaves the rest of the chunk to
 * be read as the next header in the same push, which may fail first
 * (frame_too_large / frame_empty / incomplete); both modes are checked, and
 * in both exactly the records before the flipped one are delivered.
 */
import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { utf8 } from "../../src/bytes.ts";
import { aesGcmOpen, aesGcmSeal, ed25519Generate } from "../../src/crypto/index.ts";
import { FrameDecoder, frameHeader } from "../../src/protocol/framing.ts";
import { RecordOpener, RecordSealer, SecureChannel, nextRecordKey, recordNonce } from "../../src/protocol/channel.ts";
import { ClientHandshake, ServerHandshake } from "../../src/protocol/handshake.ts";
import type { RekeyPolicy, SessionKeys } from "../../src/protocol/session.ts";
import { DEFAULT_REKEY_BYTES, MAX_FRAME, MAX_FRAME_PRELOGIN, RECORD_TAG_LENGTH } from "../../src/protocol/limits.ts";
import { type Message, encodeMessage, joinRecordPayload } from "../../src/protocol/messages.ts";
import { SEED, bytesEqual, codeOf, expectCode, flipBit, fullExamples, hex, rng } from "./helpers.ts";

console.log(`channel.test.ts: PROTOCOL_TEST_SEED=${SEED}`);
const r = rng(SEED ^ 0xc4a1);

const NO_BYTE_LIMIT = DEFAULT_REKEY_BYTES;
const policy = (records: number, bytes: number = NO_BYTE_LIMIT): RekeyPolicy => ({ records, bytes });

interface Sealed {
  plaintext: Uint8Array;
  frame: Uint8Array;
  body: Uint8Array;
}

function sealAll(key: Uint8Array, p: RekeyPolicy, plaintexts: Uint8Array[]): Sealed[] {
  const s = new RecordSealer(key, p);
  return plaintexts.map((plaintext) => {
    const frame = s.seal(plaintext);
    return { plaintext, frame, body: frame.subarray(4) };
  });
}

interface Outcome {
  delivered: Uint8Array[];
  /** First error code, "incomplete" if the stream ended mid-frame, null if all went through. */
  code: string | null;
  decoder: FrameDecoder;
  opener: RecordOpener;
}

/** The receive path: decoder → opener, stopping at the first failure. */
function receive(chunks: Uint8Array[], key: Uint8Array, p: RekeyPolicy, byteAtATime = false): Outcome {
  const decoder = new FrameDecoder(MAX_FRAME);
  const opener = new RecordOpener(key, p);
  const delivered: Uint8Array[] = [];
  if (byteAtATime) chunks = [...Buffer.concat(chunks)].map((b) => Uint8Array.of(b));
  for (const chunk of chunks) {
    let bodies: Uint8Array[];
    try {
      bodies = decoder.push(chunk);
    } catch (e) {
      return { delivered, code: codeOf(() => { throw e; }), decoder, opener };
    }
    for (const b of bodies) {
      try {
        delivered.push(opener.open(b));
      } catch (e) {
        return { delivered, code: codeOf(() => { throw e; }), decoder, opener };
      }
    }
  }
  return { delivered, code: decoder.pending > 0 ? "incomplete" : null, decoder, opener };
}

/**
 * Checks an outcome against "fault at record `at` with `code`": exactly the
 * records before it were delivered, byte for byte, and the failed component
 * refuses everything afterwards. Returns a problem description or null.
 */
function checkFault(o: Outcome, at: number, code: string, records: Sealed[]): string | null {
  if (o.code !== code) return `code ${o.code}, want ${code}`;
  if (o.delivered.length !== at) return `delivered ${o.delivered.length} records, want ${at}`;
  for (let i = 0; i < at; i++) if (!bytesEqual(o.delivered[i]!, records[i]!.plaintext)) return `record ${i} delivered altered`;
  if (code === "record_auth_failed" || code === "record_empty") {
    if (!o.opener.closed) return "opener not closed after the failure";
    // Every later (and the original) valid record is refused too.
    for (let j = Math.min(at, records.length - 1); j < records.length; j++) {
      const c = codeOf(() => o.opener.open(records[j]!.body));
      if (c !== "channel_closed") return `after the fault, valid record ${j} gave ${c}`;
    }
  } else if (code === "frame_too_large" || code === "frame_empty") {
    for (const rec of records) {
      const c = codeOf(() => o.decoder.push(rec.frame));
      if (c !== code) return `after the fault, decoder push gave ${c}`;
    }
  } else if (code === "incomplete") {
    if (o.decoder.pending === 0) return "nothing pending";
  }
  return null;
}

// Ten records; plaintext lengths chosen so every header outcome occurs: 16 bytes gives L = 32
// (one flip → 0: frame_empty), small last record (a longer L runs past the end: incomplete).
const LENGTHS = [2, 16, 3, 31, 64, 5, 100, 12, 47, 2];
const KEY = r.bytes(32);
const STREAM_POLICY = policy(3); // rekeys inside the stream, after records 2, 5 and 8
const RECORDS = sealAll(
  KEY,
  STREAM_POLICY,
  LENGTHS.map((n) => r.bytes(n)),
);
const FRAMES = RECORDS.map((x) => x.frame);

describe("record stream under attack", () => {
  test("control: the untouched stream is delivered whole, one frame per push or all coalesced", () => {
    const o = receive(FRAMES, KEY, STREAM_POLICY);
    expect(o.code).toBeNull();
    expect(o.delivered.map(hex)).toEqual(RECORDS.map((x) => hex(x.plaintext)));
    expect(o.opener.epoch).toBe(3);
    expect(receive([Buffer.concat(FRAMES)], KEY, STREAM_POLICY).delivered.length).toBe(10);
  });

  test("every single-bit flip in every record's ciphertext and tag → record_auth_failed at that record", () => {
    const problems: string[] = [];
    let flips = 0;
    for (let i = 0; i < RECORDS.length; i++) {
      const bits = RECORDS[i]!.body.length * 8;
      for (let bit = 0; bit < bits; bit++) {
        const chunks = FRAMES.slice();
        chunks[i] = flipBit(FRAMES[i]!, 32 + bit);
        const p = checkFault(receive(chunks, KEY, STREAM_POLICY), i, "record_auth_failed", RECORDS);
        if (p) problems.push(`record ${i} body bit ${bit}: ${p}`);
        flips++;
      }
    }
    expect(problems).toEqual([]);
    expect(flips).toBe((LENGTHS.reduce((a, b) => a + b) + 10 * RECORD_TAG_LENGTH) * 8);
  });

  test("every single-bit flip in every record's header → refused at that record (outcome per the table above)", () => {
    const total = FRAMES.reduce((n, f) => n + f.length, 0);
    const problems: string[] = [];
    const seen = new Set<string>();
    let start = 0;
    for (let i = 0; i < RECORDS.length; i++) {
      const length = RECORDS[i]!.body.length;
      for (let bit = 0; bit < 32; bit++) {
        const chunks = FRAMES.slice();
        chunks[i] = flipBit(FRAMES[i]!, bit);
        // Bit `bit` of the frame is bit (bit & 7) of header byte (bit >> 3); the header is big-endian.
        const flipped = (length ^ (1 << ((3 - (bit >> 3)) * 8 + (bit & 7)))) >>> 0;
        const decidedByHeader = flipped === 0 ? "frame_empty" : flipped > MAX_FRAME ? "frame_too_large" : flipped > total - start - 4 ? "incomplete" : null;
        const want = decidedByHeader ?? "record_auth_failed";
        seen.add(want);
        // Byte at a time, the decoder hands out the (wrong-length) body as soon as it is complete: the table is exact.
        const p = checkFault(receive(chunks, KEY, STREAM_POLICY, true), i, want, RECORDS);
        if (p) problems.push(`record ${i} header bit ${bit} (L ${length} → ${flipped}), byte at a time: ${p}`);
        // One frame per push: when the body is cut short, the rest of the chunk is read as the next header in the
        // same push, which may fail first (frame_too_large / frame_empty / incomplete); still refused at record i.
        const o = receive(chunks, KEY, STREAM_POLICY);
        const allowed = decidedByHeader ? [decidedByHeader] : ["record_auth_failed", "frame_too_large", "frame_empty", "incomplete"];
        const q = allowed.includes(o.code ?? "none") ? checkFault(o, i, o.code!, RECORDS) : `code ${o.code}, want one of ${allowed}`;
        if (q) problems.push(`record ${i} header bit ${bit} (L ${length} → ${flipped}), frame per push: ${q}`);
      }
      start += FRAMES[i]!.length;
    }
    expect(problems).toEqual([]);
    // The matrix really exercised every kind of outcome.
    expect([...seen].sort()).toEqual(["frame_empty", "frame_too_large", "incomplete", "record_auth_failed"]);
  });

  // Stream edits: a list of record indices as sent, and the position where it first deviates.
  const edits: [string, number[], number][] = [];
  const seq = [...Array(10).keys()];
  for (let i = 0; i < 10; i++) edits.push([`replay record ${i} right after itself`, [...seq.slice(0, i + 1), i, ...seq.slice(i + 1)], i + 1]);
  for (let i = 0; i < 10; i++) edits.push([`replay record ${i} at the end`, [...seq, i], 10]);
  // Dropping the last record is indistinguishable from the peer stopping there; the channel cannot see it.
  for (let i = 0; i < 9; i++) edits.push([`drop record ${i}`, [...seq.slice(0, i), ...seq.slice(i + 1)], i]);
  for (let i = 0; i < 9; i++) edits.push([`swap records ${i} and ${i + 1}`, [...seq.slice(0, i), i + 1, i, ...seq.slice(i + 2)], i]);
  test.each(edits)("%s → record_auth_failed there, nothing after delivered", (_name, order, at) => {
    expect(checkFault(receive(order.map((i) => FRAMES[i]!), KEY, STREAM_POLICY), at, "record_auth_failed", RECORDS)).toBeNull();
  });

  test("a stream cut at every byte of the last record delivers the first nine and nothing of the tenth", () => {
    const last = FRAMES[9]!;
    const problems: string[] = [];
    for (let k = 1; k < last.length; k++) {
      const o = receive([...FRAMES.slice(0, 9), last.subarray(0, k)], KEY, STREAM_POLICY);
      const p = checkFault(o, 9, "incomplete", RECORDS) ?? (o.decoder.pending === k ? null : `pending ${o.decoder.pending}, want ${k}`);
      if (p) problems.push(`cut at ${k}: ${p}`);
    }
    expect(problems).toEqual([]);
  });

  test("the last record's body truncated at every byte (header rebuilt to match) → record_auth_failed", () => {
    const body = RECORDS[9]!.body;
    const problems: string[] = [];
    for (let k = 0; k < body.length; k++) {
      const truncated = body.subarray(0, k);
      // k = 0 cannot be framed at all; the others are re-framed with a consistent header.
      const chunks = k === 0 ? FRAMES.slice(0, 9) : [...FRAMES.slice(0, 9), Buffer.concat([frameHeader(k), truncated])];
      const o = receive(chunks, KEY, STREAM_POLICY);
      const c = codeOf(() => o.opener.open(truncated));
      if (o.delivered.length !== 9 || (k > 0 ? o.code !== "record_auth_failed" : c !== "record_auth_failed")) {
        problems.push(`k ${k}: delivered ${o.delivered.length}, code ${o.code}, direct ${c}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe("rekeying", () => {
  /** Expected key epoch after records of these plaintext lengths: the spec's rule, written out. */
  function modelEpochs(lengths: number[], p: RekeyPolicy): number[] {
    let epoch = 0;
    let records = 0;
    let bytes = 0;
    return lengths.map((n) => {
      records += 1;
      bytes += n;
      if (records >= p.records || bytes >= p.bytes) {
        epoch += 1;
        records = 0;
        bytes = 0;
      }
      return epoch;
    });
  }

  /** The same rule, one record at a time (for long runs). */
  function incrementalModel(p: RekeyPolicy): { epoch: number; step(n: number): void } {
    let records = 0;
    let bytes = 0;
    return {
      epoch: 0,
      step(n) {
        records += 1;
        bytes += n;
        if (records >= p.records || bytes >= p.bytes) {
          this.epoch += 1;
          records = 0;
          bytes = 0;
        }
      },
    };
  }

  interface End {
    sealer: RecordSealer;
    opener: RecordOpener;
    decoder: FrameDecoder;
  }
  function pair(p: RekeyPolicy): { client: End; server: End } {
    const c2s = r.bytes(32);
    const s2c = r.bytes(32);
    const client = new SecureChannel({ c2s, s2c, rekey: p }, "client");
    const server = new SecureChannel({ c2s, s2c, rekey: p }, "server");
    return {
      client: { sealer: client.sealer, opener: client.opener, decoder: new FrameDecoder(MAX_FRAME) },
      server: { sealer: server.sealer, opener: server.opener, decoder: new FrameDecoder(MAX_FRAME) },
    };
  }

  const CASES: [string, RekeyPolicy, number][] = [
    ["records 1", policy(1), 300],
    ["records 2", policy(2), 301],
    ["records 1024", policy(1024), 2100],
    ["bytes 100", policy(2 ** 20, 100), 300],
    ["records 3 or bytes 100", policy(3, 100), 300],
  ];

  test.each(CASES)("%s: both directions in turn, then both at once interleaved — byte-identical, epochs agree", (_name, p, n) => {
    const { client, server } = pair(p);
    const problems: string[] = [];
    const sent = { c2s: [] as number[], s2c: [] as number[] };
    const model = { c2s: incrementalModel(p), s2c: incrementalModel(p) };
    const send = (from: End, to: End, dir: "c2s" | "s2c", k: number): void => {
      // Mostly short records, sometimes one bigger than the byte limit on its own.
      const pt = r.bytes(r.int(0, 9) === 0 ? r.int(101, 400) : r.int(2, 60));
      const got = to.decoder.push(from.sealer.seal(pt));
      const opened = got.map((b) => to.opener.open(b));
      sent[dir].push(pt.length);
      model[dir].step(pt.length);
      const want = model[dir].epoch;
      if (opened.length !== 1 || !bytesEqual(opened[0]!, pt)) problems.push(`${dir} #${k}: plaintext differs`);
      if (from.sealer.epoch !== want || to.opener.epoch !== want) {
        problems.push(`${dir} #${k}: sealer epoch ${from.sealer.epoch}, opener epoch ${to.opener.epoch}, want ${want}`);
      }
    };
    for (let k = 0; k < n; k++) send(client, server, "c2s", k);
    for (let k = 0; k < n; k++) send(server, client, "s2c", k);
    // Both sides sending, interleaved in a seeded order: each direction's keys move on independently.
    for (let k = 0; k < 2 * n; k++) {
      if (r.u32() & 1) send(client, server, "c2s", k);
      else send(server, client, "s2c", k);
    }
    expect(problems).toEqual([]);
    // The epochs really advanced (the policy was exercised), in both directions.
    expect(client.sealer.epoch).toBe(modelEpochs(sent.c2s, p).at(-1)!);
    expect(server.sealer.epoch).toBe(modelEpochs(sent.s2c, p).at(-1)!);
    expect(client.sealer.epoch).toBeGreaterThanOrEqual(2);
    expect(server.sealer.epoch).toBeGreaterThanOrEqual(2);
    expect(client.sealer.count).toBe(sent.c2s.length);
    expect(server.opener.count).toBe(sent.c2s.length);
  });

  test("epochs for simple limits: records 1 → one per record; records 2 → every other; records 1024 → after 1024", () => {
    const key = r.bytes(32);
    const epochsAfter = (p: RekeyPolicy, n: number): number => {
      const s = new RecordSealer(key, p);
      for (let i = 0; i < n; i++) s.seal(new Uint8Array(2));
      return s.epoch;
    };
    expect([epochsAfter(policy(1), 5), epochsAfter(policy(2), 5), epochsAfter(policy(1024), 1023), epochsAfter(policy(1024), 1024), epochsAfter(policy(1024), 2048)]).toEqual([5, 2, 0, 1, 2]);
    // bytes 100 with 30-byte records: 30, 60, 90, 120 → rekey after the 4th; the excess does not carry over.
    const s = new RecordSealer(key, policy(2 ** 20, 100));
    const epochs: number[] = [];
    for (let i = 0; i < 9; i++) {
      s.seal(new Uint8Array(30));
      epochs.push(s.epoch);
    }
    expect(epochs).toEqual([0, 0, 0, 1, 1, 1, 1, 2, 2]);
  });

  test("a record sealed under the previous key is refused", () => {
    const key = r.bytes(32);
    const pt = utf8('{"type":"error","code":"x","message":""}');
    // (a) sealed by hand with key_0 and the right nonce after the opener moved to epoch 1.
    const opener = new RecordOpener(key, policy(1));
    const s = new RecordSealer(key, policy(1));
    expect(bytesEqual(opener.open(s.seal(pt).subarray(4)), pt)).toBe(true);
    expect(opener.epoch).toBe(1);
    const stale = aesGcmSeal(key, recordNonce(1), pt, frameHeader(pt.length + RECORD_TAG_LENGTH));
    expectCode(() => opener.open(stale), "record_auth_failed");
    expect(opener.closed).toBe(true);
    // (b) a sealer that lags (rekeys every 2 records) against an opener that rekeys every record.
    const lagging = new RecordSealer(key, policy(2));
    const strict = new RecordOpener(key, policy(1));
    expect(bytesEqual(strict.open(lagging.seal(pt).subarray(4)), pt)).toBe(true);
    expectCode(() => strict.open(lagging.seal(pt).subarray(4)), "record_auth_failed");
  });

  test("forward secrecy: each record opens only under its own key; the schedule is key_{i+1} = nextRecordKey(key_i)", () => {
    const key0 = r.bytes(32);
    const s = new RecordSealer(key0, policy(1));
    const keys = [key0];
    for (let i = 1; i <= 4; i++) keys.push(nextRecordKey(keys[i - 1]!));
    expect(new Set(keys.map(hex)).size).toBe(5);
    for (let n = 0; n < 4; n++) {
      const pt = r.bytes(20);
      const frame = s.seal(pt);
      const [header, body] = [frame.subarray(0, 4), frame.subarray(4)];
      for (let k = 0; k < keys.length; k++) {
        const c = codeOf(() => aesGcmOpen(keys[k]!, recordNonce(n), body, header));
        expect([n, k, c]).toEqual([n, k, k === n ? "no error" : "aead_auth_failed"]);
      }
      expect(bytesEqual(aesGcmOpen(keys[n]!, recordNonce(n), body, header), pt)).toBe(true);
    }
  });

  test("nextRecordKey is HKDF-Expand(key, \"securechat/1 rekey\", 32), checked against HMAC-SHA256 directly", () => {
    // RFC 5869: for L = 32, OKM = T(1) = HMAC-Hash(PRK, info ‖ 0x01).
    const hkdfExpand32 = (prk: Uint8Array, info: string): string =>
      createHmac("sha256", prk).update(Buffer.concat([Buffer.from(info, "ascii"), Buffer.from([1])])).digest("hex");
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(hex(nextRecordKey(key))).toBe(hkdfExpand32(key, "securechat/1 rekey"));
    expect(hex(nextRecordKey(key))).toBe(hex(nextRecordKey(key.slice())));
    const rk = r.bytes(32);
    expect(hex(nextRecordKey(rk))).toBe(hkdfExpand32(rk, "securechat/1 rekey"));
    expect(hex(nextRecordKey(nextRecordKey(rk)))).toBe(hkdfExpand32(nextRecordKey(rk), "securechat/1 rekey"));
  });

  test("the caller's key buffer is not wiped by the channel's own rekeying", () => {
    const key = r.bytes(32);
    const copy = key.slice();
    const s = new RecordSealer(key, policy(1));
    const o = new RecordOpener(key, policy(1));
    for (let i = 0; i < 3; i++) o.open(s.seal(new Uint8Array(4)).subarray(4));
    s.close();
    o.close();
    expect(hex(key)).toBe(hex(copy));
  });

  test("bad keys and policies are refused", () => {
    expectCode(() => new RecordSealer(new Uint8Array(16), policy(1)), "channel_key_length");
    expectCode(() => new RecordOpener(new Uint8Array(33), policy(1)), "channel_key_length");
    expectCode(() => new RecordSealer(r.bytes(32), policy(0)), "channel_policy");
    expectCode(() => new RecordSealer(r.bytes(32), policy(1, 0)), "channel_policy");
    expectCode(() => new RecordSealer(r.bytes(32), policy(Number.NaN)), "channel_policy");
  });
});

describe("nonces", () => {
  test.each([
    [0, "000000000000000000000000"],
    [1, "000000000000000000000001"],
    [255, "0000000000000000000000ff"],
    [256, "000000000000000000000100"],
    [2 ** 32 - 1, "0000000000000000ffffffff"],
    [2 ** 32, "000000000000000100000000"],
    [2 ** 32 + 5, "000000000000000100000005"],
    [Number.MAX_SAFE_INTEGER, "00000000001fffffffffffff"],
  ])("recordNonce(%p) = %s", (n, want) => {
    expect(hex(recordNonce(n))).toBe(want);
  });

  test("recordNonce(2^32) has byte 7 = 1 and the last four bytes zero", () => {
    const nonce = recordNonce(2 ** 32);
    expect(nonce[7]).toBe(1);
    expect(Array.from(nonce.subarray(8))).toEqual([0, 0, 0, 0]);
  });

  test("record n is sealed with recordNonce(n) and its frame header as AAD", () => {
    const key = r.bytes(32);
    const s = new RecordSealer(key, policy(2 ** 20));
    for (let n = 0; n < 5; n++) {
      const pt = r.bytes(10 + n);
      const frame = s.seal(pt);
      expect(hex(frame.subarray(0, 4))).toBe(hex(frameHeader(pt.length + RECORD_TAG_LENGTH)));
      expect(hex(aesGcmOpen(key, recordNonce(n), frame.subarray(4), frame.subarray(0, 4)))).toBe(hex(pt));
      expect(hex(frame.subarray(4))).toBe(hex(aesGcmSeal(key, recordNonce(n), pt, frame.subarray(0, 4))));
    }
    expect(s.count).toBe(5);
  });
});

describe("record sizes", () => {
  test.each([0, 1])("sealing a %p-byte plaintext → record_empty, and burns no nonce", (n) => {
    const key = r.bytes(32);
    const s = new RecordSealer(key, policy(1));
    expectCode(() => s.seal(new Uint8Array(n)), "record_empty");
    expect([s.count, s.epoch]).toEqual([0, 0]);
    const o = new RecordOpener(key, policy(1));
    expect(hex(o.open(s.seal(utf8("{}")).subarray(4)))).toBe(hex(utf8("{}")));
  });

  test.each([0, 1])("a well-authenticated record with a %p-byte plaintext → opener throws record_empty and closes", (n) => {
    const key = r.bytes(32);
    const body = aesGcmSeal(key, recordNonce(0), utf8("{").subarray(0, n), frameHeader(n + RECORD_TAG_LENGTH));
    const o = new RecordOpener(key, policy(1));
    expectCode(() => o.open(body), "record_empty");
    expect(o.closed).toBe(true);
    expectCode(() => o.open(new RecordSealer(key, policy(1)).seal(utf8("{}")).subarray(4)), "channel_closed");
  });

  test.each([0, 1, 15])("a %p-byte body (shorter than the tag) → record_auth_failed", (n) => {
    const o = new RecordOpener(r.bytes(32), policy(1));
    expectCode(() => o.open(r.bytes(n)), "record_auth_failed");
    expect(o.closed).toBe(true);
  });

  test.each([
    ["MAX_FRAME_PRELOGIN", MAX_FRAME_PRELOGIN],
    ["MAX_FRAME (default)", MAX_FRAME],
  ] as const)("maxFrame %s: largest plaintext fits exactly, one more byte → frame_too_large", (_name, maxFrame) => {
    const key = r.bytes(32);
    const s = maxFrame === MAX_FRAME ? new RecordSealer(key, policy(2 ** 20)) : new RecordSealer(key, policy(2 ** 20), maxFrame);
    const fits = r.bytes(maxFrame - RECORD_TAG_LENGTH);
    expectCode(() => s.seal(r.bytes(maxFrame - RECORD_TAG_LENGTH + 1)), "frame_too_large");
    expect(s.count).toBe(0);
    const frame = s.seal(fits);
    expect(frame.length).toBe(4 + maxFrame);
    const [b] = new FrameDecoder(maxFrame).push(frame);
    expect(hex(new RecordOpener(key, policy(2 ** 20)).open(b!))).toBe(hex(fits));
  });

  test("maxFrame can be raised after login", () => {
    const s = new RecordSealer(r.bytes(32), policy(2 ** 20), MAX_FRAME_PRELOGIN);
    expectCode(() => s.seal(new Uint8Array(5000)), "frame_too_large");
    s.maxFrame = MAX_FRAME;
    expect(s.seal(new Uint8Array(5000)).length).toBe(5000 + RECORD_TAG_LENGTH + 4);
  });
});

describe("sealInto: sealing into a caller's buffer", () => {
  test("writes at the offset exactly the frames seal() returns, record after record, across rekeys, and nothing else", () => {
    const key = r.bytes(32);
    const a = new RecordSealer(key, policy(3));
    const b = new RecordSealer(key, policy(3));
    const out = new Uint8Array(64 + 5000 + RECORD_TAG_LENGTH + 4).fill(0xee);
    for (let i = 0; i < 8; i++) {
      const pt = r.bytes(2 + ((i * 997) % 4990));
      const at = [0, 1, 60, 64][i % 4]!;
      out.fill(0xee);
      const n = b.sealInto(pt, out, at);
      expect(hex(out.subarray(at, at + n))).toBe(hex(a.seal(pt)));
      expect(out.subarray(0, at).every((x) => x === 0xee)).toBe(true);
      expect(out.subarray(at + n).every((x) => x === 0xee)).toBe(true);
    }
    expect(b.epoch).toBe(a.epoch);
    expect(b.epoch).toBeGreaterThan(0);
  });

  test("a frame that does not fit → aead_output_length, and no nonce is burnt", () => {
    const key = r.bytes(32);
    const a = new RecordSealer(key, policy(2 ** 20));
    const b = new RecordSealer(key, policy(2 ** 20));
    const pt = utf8('{"type":"ping"}');
    const total = 4 + pt.length + RECORD_TAG_LENGTH;
    expectCode(() => b.sealInto(pt, new Uint8Array(total - 1)), "aead_output_length");
    expectCode(() => b.sealInto(pt, new Uint8Array(total + 3), 4), "aead_output_length");
    expectCode(() => b.sealInto(pt, new Uint8Array(total), -1), "aead_output_length");
    expect(b.count).toBe(0);
    const out = new Uint8Array(total);
    expect(b.sealInto(pt, out)).toBe(total);
    expect(hex(out)).toBe(hex(a.seal(pt)));
  });
});

describe("SecureChannel", () => {
  const host = ed25519Generate(r.bytes(32));
  function handshake(): { ck: SessionKeys; sk: SessionKeys } {
    const client = new ClientHandshake();
    const server = new ServerHandshake({ hostKey: host, rekey: policy(2) });
    const { reply, keys: sk } = server.receiveHello(client.hello());
    return { ck: client.receive(reply), sk };
  }
  const EX = fullExamples(r);

  test("several messages in one record, both ways, with keys from a real handshake", () => {
    const { ck, sk } = handshake();
    const client = new SecureChannel(ck, "client");
    const server = new SecureChannel(sk, "server");
    const up: Message[] = [EX.login, EX.error, EX.register];
    const down: Message[] = [EX.welcome, EX.error];
    for (let round = 0; round < 5; round++) {
      expect(server.open(client.seal(up).subarray(4))).toEqual(up);
      expect(client.open(server.seal(down).subarray(4))).toEqual(down);
    }
    expect([client.sealer.epoch, server.opener.epoch, server.sealer.epoch, client.opener.epoch]).toEqual([2, 2, 2, 2]);
  });

  test("pre-encoded JSON texts are joined as they are, mixed with messages", () => {
    const c2s = r.bytes(32);
    const s2c = r.bytes(32);
    const keys = { c2s, s2c, rekey: policy(1024) };
    const client = new SecureChannel(keys, "client");
    const server = new SecureChannel(keys, "server");
    const texts = [encodeMessage(EX.error), encodeMessage(EX.login)];
    const frame = client.seal([texts[0]!, EX.welcome, texts[1]!]);
    // The record's plaintext is exactly the three JSON texts joined by LF.
    const plaintext = aesGcmOpen(c2s, recordNonce(0), frame.subarray(4), frame.subarray(0, 4));
    expect(new TextDecoder().decode(plaintext)).toBe([texts[0], encodeMessage(EX.welcome), texts[1]].join("\n"));
    expect(hex(plaintext)).toBe(hex(joinRecordPayload([texts[0]!, encodeMessage(EX.welcome), texts[1]!])));
    expect(server.open(frame.subarray(4))).toEqual([EX.error, EX.welcome, EX.login]);
  });

  test("`allowed` applies to every message in the record", () => {
    const keys = { c2s: r.bytes(32), s2c: r.bytes(32), rekey: policy(1024) };
    const client = new SecureChannel(keys, "client");
    const server = new SecureChannel(keys, "server");
    expectCode(() => server.open(client.seal([EX.login, EX.welcome]).subarray(4), ["login", "register"]), "message_unexpected");
  });

  test("a record reflected back to its sender does not open (directions have different keys)", () => {
    const { ck } = handshake();
    const client = new SecureChannel(ck, "client");
    expectCode(() => client.open(client.seal([EX.error]).subarray(4)), "record_auth_failed");
  });

  test("two ends both playing the client cannot talk", () => {
    const { ck, sk } = handshake();
    const a = new SecureChannel(ck, "client");
    const b = new SecureChannel(sk, "client");
    expectCode(() => b.open(a.seal([EX.error]).subarray(4)), "record_auth_failed");
  });

  test("a record whose payload has an empty segment → record_empty_message", () => {
    const keys = { c2s: r.bytes(32), s2c: r.bytes(32), rekey: policy(1024) };
    const client = new SecureChannel(keys, "client");
    const server = new SecureChannel(keys, "server");
    expectCode(() => server.open(client.sealer.seal(utf8("{}\n\n{}")).subarray(4)), "record_empty_message");
  });

  test("openSecret / sealSecret wipe the record's plaintext once decoded or sealed, even when it does not decode", () => {
    const { ck, sk } = handshake();
    const client = new SecureChannel(ck, "client");
    const server = new SecureChannel(sk, "server");
    const login: Message = { type: "login", user: "alice", sig: new Uint8Array(64).fill(7), password: "correct horse battery staple" };
    const seen: Uint8Array[] = [];
    const realSeal = client.sealer.seal.bind(client.sealer);
    client.sealer.seal = (pt: Uint8Array) => {
      seen.push(pt);
      return realSeal(pt);
    };
    const frame = client.sealSecret([login]);
    expect(seen[0]!.length).toBeGreaterThan(0);
    expect(seen[0]!.every((b) => b === 0)).toBe(true);
    const realOpen = server.opener.open.bind(server.opener);
    server.opener.open = (body: Uint8Array) => {
      const pt = realOpen(body);
      seen.push(pt);
      return pt;
    };
    const [got] = server.openSecret(frame.subarray(4));
    expect(got).toEqual(login);
    expect(seen[1]!.every((b) => b === 0)).toBe(true);
    // A record that opens but does not decode: refused, and wiped all the same.
    const bad = realSeal(utf8('{"type":"login","password":"hunter2 hunter2"'));
    expectCode(() => server.openSecret(bad.subarray(4)), "json_invalid");
    expect(seen.at(-1)!.every((b) => b === 0)).toBe(true);
  });

  test("close() stops both directions", () => {
    const keys = { c2s: r.bytes(32), s2c: r.bytes(32), rekey: policy(1024) };
    const client = new SecureChannel(keys, "client");
    const server = new SecureChannel(keys, "server");
    const frame = client.seal([EX.error]);
    server.close();
    expectCode(() => server.open(frame.subarray(4)), "channel_closed");
    expectCode(() => server.seal([EX.error]), "channel_closed");
  });
});
