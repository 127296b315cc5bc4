/**
 * Why the relay seals its frames 60 bytes into its buffer (src/server/server.ts,
 * FlushTurn.AT): the cost of copying AES-GCM output (a fresh buffer from
 * node:crypto) into a reused buffer at several offsets, against the AES-GCM
 * call alone. At offset 4 the copy's destination trails its source by 4
 * bytes modulo 4096 on this runtime, and the CPU's 4K aliasing makes the
 * copy cost more than the encryption; from 64 on it is nearly free.
 *
 *   bun run bench/aliasing.ts
 *
 * Prints µs per record (median of 5 runs of 5,000 records).
 */
import { createCipheriv } from "node:crypto";

const key = new Uint8Array(32).fill(1);
const nonce = new Uint8Array(12);
const out = new Uint8Array(65536 + 256);
const OFFSETS = [0, 4, 16, 64, 128];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function time(fn: () => void): number {
  for (let i = 0; i < 1000; i++) fn();
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = Bun.nanoseconds();
    for (let i = 0; i < 5000; i++) fn();
    runs.push((Bun.nanoseconds() - t0) / 5000 / 1000);
  }
  return median(runs);
}

console.log(["bytes", "AES-GCM only", ...OFFSETS.map((o) => `+copy @${o}`)].join("\t"));
for (const size of [200, 1000, 4000, 16000, 28000, 64000]) {
  const pt = new Uint8Array(size).fill(0x41);
  const seal = (at: number): void => {
    const c = createCipheriv("aes-256-gcm", key, nonce);
    const ct = c.update(pt);
    if (at >= 0) out.set(ct, at);
    c.final();
    c.getAuthTag();
  };
  const row = [String(size), time(() => seal(-1)).toFixed(2), ...OFFSETS.map((o) => time(() => seal(o)).toFixed(2))];
  console.log(row.join("\t"));
}
