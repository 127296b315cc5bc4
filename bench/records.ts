/**
 * Record layer: RecordSealer.seal / RecordOpener.open against one bare
 * node:crypto AES-256-GCM call per record (no framing, no AAD, no copies)
 * at the same sizes, in the same run. The ratio is the cost of the frame
 * header, the counter nonce, header-as-AAD and the output copies.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { aesGcmOpen, aesGcmSeal, randomBytes } from "../src/crypto/index.ts";
import { RecordOpener, RecordSealer, nextRecordKey, recordNonce } from "../src/protocol/channel.ts";
import type { RekeyPolicy } from "../src/protocol/session.ts";
import { frameHeader } from "../src/protocol/framing.ts";
import { DEFAULT_REKEY_BYTES, DEFAULT_REKEY_RECORDS, FRAME_HEADER_LENGTH } from "../src/protocol/limits.ts";
import { type Measurement, measure, measureGroup } from "./lib/measure.ts";
import { mbPerSecond, ratio, spread, table, time } from "./lib/table.ts";
import type { Section } from "./micro.ts";

export const SIZES = [100, 1024, 16 * 1024] as const;

const NEVER: RekeyPolicy = { records: Number.MAX_SAFE_INTEGER, bytes: Number.MAX_SAFE_INTEGER };
const DEFAULT: RekeyPolicy = { records: DEFAULT_REKEY_RECORDS, bytes: DEFAULT_REKEY_BYTES };

/** Records must be opened in counter order: openers replay a ring of this many pre-sealed bodies. */
export const RING = 64;

/**
 * An `open` that replays `bodies` (sealed at counters 0..RING-1) through a
 * fresh opener every RING records; the constructor is amortized over RING.
 */
export function ringOpen<T>(bodies: Uint8Array[], fresh: () => { open(body: Uint8Array): T }): () => T {
  let opener = fresh();
  let i = 0;
  return () => {
    if (i === bodies.length) {
      opener = fresh();
      i = 0;
    }
    return opener.open(bodies[i++]!);
  };
}

const label = (n: number): string => (n >= 1024 ? `${n / 1024} KiB` : `${n} B`);

export function recordsSection(): Section {
  const key = randomBytes(32);
  const nonce = randomBytes(12);
  const measurements: Measurement[] = [];
  const rows: (string[] | null)[] = [];
  const summary: Record<string, { sealRatio: number; openRatio: number; sealUs: number; openUs: number; bareSealUs: number; bareOpenUs: number }> = {};

  for (const size of SIZES) {
    const plaintext = randomBytes(size);

    // Bare AES-256-GCM. The fixed nonce is fine for timing, never for use.
    const bareSeal = () => {
      const c = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: 16 });
      const ct = c.update(plaintext);
      c.final();
      return [ct, c.getAuthTag()] as const;
    };
    const [ct, tag] = bareSeal();
    const bareOpen = () => {
      const d = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: 16 });
      d.setAuthTag(tag);
      const pt = d.update(ct);
      d.final();
      return pt;
    };
    if (!bareOpen().equals(plaintext)) throw new Error("bench: bare AES-GCM round trip failed");

    const sealer = new RecordSealer(key, DEFAULT);
    const bodies = Array.from({ length: RING }, () => sealer.seal(plaintext).subarray(FRAME_HEADER_LENGTH));
    const open = (policy: RekeyPolicy) => ringOpen(bodies, () => new RecordOpener(key, policy));
    const seal = (policy: RekeyPolicy) => {
      const s = new RecordSealer(key, policy);
      return () => s.seal(plaintext);
    };
    if (!Buffer.from(open(DEFAULT)()).equals(plaintext)) throw new Error("bench: record round trip failed");

    // The src/crypto wrapper alone (AAD, size checks, output copy), between the two.
    const header = frameHeader(size + 16);
    const n0 = recordNonce(0);
    const wrapped = aesGcmSeal(key, n0, plaintext, header);
    const [sealNever, sealDefault, sealWrapper, sealBare, openNever, openDefault, openWrapper, openBare] = measureGroup([
      { name: `seal ${label(size)} no rekey`, fn: seal(NEVER) },
      { name: `seal ${label(size)} default policy`, fn: seal(DEFAULT) },
      { name: `seal ${label(size)} aesGcmSeal`, fn: () => aesGcmSeal(key, n0, plaintext, header) },
      { name: `seal ${label(size)} bare aes-256-gcm`, fn: bareSeal },
      { name: `open ${label(size)} no rekey`, fn: open(NEVER) },
      { name: `open ${label(size)} default policy`, fn: open(DEFAULT) },
      { name: `open ${label(size)} aesGcmOpen`, fn: () => aesGcmOpen(key, n0, wrapped, header) },
      { name: `open ${label(size)} bare aes-256-gcm`, fn: bareOpen },
    ]);
    const seals = [sealNever, sealDefault, sealWrapper, sealBare] as const;
    const opens = [openNever, openDefault, openWrapper, openBare] as const;
    measurements.push(...seals, ...opens);

    for (const [op, [never, dflt, wrapper, bare]] of [["seal", seals], ["open", opens]] as const) {
      const row = (variant: string, m: Measurement): string[] => [
        `${label(size)} ${op}`,
        variant,
        time(m.median),
        spread(m),
        mbPerSecond(size, m.median),
        ratio(m.median / bare.median),
      ];
      rows.push(
        row("RecordSealer/Opener, no rekey", never),
        row("RecordSealer/Opener, default policy", dflt),
        row(`src/crypto ${op === "seal" ? "aesGcmSeal" : "aesGcmOpen"} + AAD`, wrapper),
        row("bare node:crypto, no AAD", bare),
      );
    }
    rows.push(null);
    summary[label(size)] = {
      sealRatio: seals[0].median / seals[3].median,
      openRatio: opens[0].median / opens[3].median,
      sealUs: seals[0].median / 1e3,
      openUs: opens[0].median / 1e3,
      bareSealUs: seals[3].median / 1e3,
      bareOpenUs: opens[3].median / 1e3,
    };
  }

  const rekey = measure("rekey (nextRecordKey)", () => nextRecordKey(key));
  measurements.push(rekey);
  rows.pop();

  const text = [
    table(
      "Records (per record; MB/s of plaintext; ratio = / bare node:crypto AES-256-GCM of the same size and direction)",
      ["record", "path", "median", "min/max", "throughput", "ratio"],
      rows,
    ),
    `rekey (nextRecordKey, HKDF-Expand): ${time(rekey.median)} (${spread(rekey)}); the default policy rekeys every ` +
      `2^20 records or 4 GiB, i.e. ≤ ${(rekey.median / DEFAULT_REKEY_RECORDS).toPrecision(1)} ns per record amortized.`,
  ].join("\n");

  const ratios = (k: "sealRatio" | "openRatio"): string => SIZES.map((n) => ratio(summary[label(n)]![k])).join(" / ");
  const headline = `records vs bare AES-256-GCM at ${SIZES.map(label).join(" / ")}: seal ${ratios("sealRatio")}, open ${ratios("openRatio")}`;
  return { text, headline, measurements, summary: { bySize: summary, rekeyUs: rekey.median / 1e3 } };
}
