/**
 * The client's witness quorum (PROTOCOL.md §7.13 steps 4-7; chat --witness,
 * --witness-quorum; src/client/logcheck.ts) against answers a real
 * transcript writer makes, with cosignatures made by witness keys: a log is
 * accepted only when K of the given witnesses cosigned a checkpoint of it
 * that is a prefix of the one shown and covers what was remembered at
 * connect; else log_unwitnessed, and the remembered checkpoint is kept.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { checkpointPath, LogCheck, type WitnessPolicy } from "../../src/client/logcheck.ts";
import { fromBase64 } from "../../src/bytes.ts";
import { ed25519Generate, ed25519Sign } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { cosignatureLine, formatCosignerKey, parseCosignerKey } from "../../src/transcript/cosignature.ts";
import { parseCheckpoint, parseNote } from "../../src/transcript/note.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { codeOf } from "../protocol/helpers.ts";
import { hostKeyPair, tempDir } from "../transcript/helpers.ts";

const HOST = hostKeyPair(43);
const W = [ed25519Generate(), ed25519Generate(), ed25519Generate()];
const VKEYS = W.map((k, i) => formatCosignerKey(`witness.example/w${i}`, k.publicKey));
const policy = (quorum: number, n = 2): WitnessPolicy => ({ witnesses: VKEYS.slice(0, n).map(parseCosignerKey), quorum });
let servers = 0;

function stateOf(note: string): Pick<Message<"log_state">, "origin" | "size" | "root" | "sig"> {
  const parsed = parseNote(note);
  const body = parseCheckpoint(parsed.text);
  const sig = parsed.signatures[0]!;
  return { origin: body.origin, size: body.size, root: body.root, sig: new Uint8Array([...sig.keyId, ...sig.signature]) };
}

/**
 * A writer on `dir`: `a` messages and a checkpoint that witnesses `cosigners`
 * (indexes into W) cosign, then `b` more and the checkpoint shown, with the
 * consistency proof to it from `from` and from the cosigned one.
 */
async function witnessed(dir: string, a: number, b: number, cosigners: number[], from?: number): Promise<Message<"log_state">> {
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir, hostKey: HOST, version: "t", log: silentLogger });
  const grow = async (n: number) => {
    for (let i = 0; i < n; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `${dir} ${i}` });
    w.checkpoint();
    await new Promise((r) => setImmediate(r));
  };
  await grow(a);
  const cosignedNote = w.logState(undefined, [])!.note;
  await grow(b);
  const shown = w.logState(from, [])!;
  const c = stateOf(cosignedNote);
  const proof = w.consistency(c.size, shown.size)!;
  w.close("done");
  const text = parseNote(cosignedNote).text;
  const cosignatures = cosigners.map((i) => {
    const line = cosignatureLine(text, `witness.example/w${i}`, W[i]!.publicKey, (m) => ed25519Sign(W[i]!.secretKey, m), 1_800_000_000n);
    return { name: `witness.example/w${i}`, sig: fromBase64(line.trim().split(" ")[2]!) };
  });
  return {
    type: "log_state",
    ...stateOf(shown.note),
    ...(shown.consistency ? { consistency: shown.consistency } : {}),
    cosigned: { size: c.size, root: c.root, sig: c.sig, cosignatures, consistency: proof },
  };
}

const dirOf = () => join(tempDir("witnesscheck"), "transcript");

describe("chat --witness --witness-quorum", () => {
  test("the request asks for the cosigned checkpoint; a log cosigned by the quorum is accepted and remembered", async () => {
    const id = `wit-${++servers}:7447`;
    const check = new LogCheck(id, HOST.publicKey, policy(2));
    expect(check.request()).toEqual({ type: "log_proof", cosigned: true });
    check.check(await witnessed(dirOf(), 3, 2, [0, 1]));
    expect(existsSync(checkpointPath(id))).toBe(true);
    // Without a policy nothing is asked, as before.
    expect(new LogCheck(`wit-${++servers}:7447`, HOST.publicKey).request()).toEqual({ type: "log_proof" });
  });

  test("fewer than K of the given witnesses: log_unwitnessed, and nothing is remembered; K = 1 of them passes", async () => {
    const one = await witnessed(dirOf(), 3, 2, [0]);
    const id = `wit-${++servers}:7447`;
    expect(codeOf(() => new LogCheck(id, HOST.publicKey, policy(2)).check(one))).toBe("log_unwitnessed");
    expect(existsSync(checkpointPath(id))).toBe(false);
    expect(codeOf(() => new LogCheck(id, HOST.publicKey, policy(1)).check(one))).toBe("no error");
    // A witness the user did not name does not count; the same one twice counts once.
    const stranger = await witnessed(dirOf(), 3, 2, [2, 0, 0]);
    expect(codeOf(() => new LogCheck(`wit-${++servers}:7447`, HOST.publicKey, policy(2)).check(stranger))).toBe("log_unwitnessed");
  });

  test("no cosigned checkpoint, or no log at all: log_unwitnessed", async () => {
    const { cosigned: _c, ...bare } = await witnessed(dirOf(), 3, 2, [0, 1]);
    expect(codeOf(() => new LogCheck(`wit-${++servers}:7447`, HOST.publicKey, policy(1)).check(bare))).toBe("log_unwitnessed");
    const none = new LogCheck(`wit-${++servers}:7447`, HOST.publicKey, policy(1));
    none.request();
    expect(codeOf(() => none.noLog())).toBe("log_unwitnessed");
  });

  test("a cosignature that does not verify, a cosigned checkpoint not the host key's, or not a prefix of the log shown: log_unwitnessed", async () => {
    const good = await witnessed(dirOf(), 3, 2, [0, 1]);
    const c = good.cosigned!;
    const flipped = Uint8Array.from(c.cosignatures[1]!.sig);
    flipped[40]! ^= 1;
    const tampered = { ...good, cosigned: { ...c, cosignatures: [c.cosignatures[0]!, { ...c.cosignatures[1]!, sig: flipped }] } };
    expect(codeOf(() => new LogCheck(`wit-${++servers}:7447`, HOST.publicKey, policy(1)).check(tampered))).toBe("log_unwitnessed");
    const badSig = Uint8Array.from(c.sig);
    badSig[10]! ^= 1;
    expect(codeOf(() => new LogCheck(`wit-${++servers}:7447`, HOST.publicKey, policy(1)).check({ ...good, cosigned: { ...c, sig: badSig } }))).toBe("log_unwitnessed");
    // Cosigned by the witnesses, but on another branch: its proof does not lead to the root shown.
    const other = await witnessed(dirOf(), 3, 2, [0, 1]);
    expect(codeOf(() => new LogCheck(`wit-${++servers}:7447`, HOST.publicKey, policy(2)).check({ ...good, cosigned: other.cosigned }))).toBe("log_unwitnessed");
  });

  test("witnesses that cosigned less than the client was shown before (a view shown only to it): log_unwitnessed, the remembered checkpoint kept", async () => {
    const id = `wit-${++servers}:7447`;
    const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir: dirOf(), hostKey: HOST, version: "t", log: silentLogger });
    const grow = async (n: number) => {
      for (let i = 0; i < n; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `m ${i}` });
      w.checkpoint();
      await new Promise((r) => setImmediate(r));
      return w.logState(undefined, [])!;
    };
    const noteA = (await grow(3)).note;
    const t = parseNote(noteA).text;
    const cosign = (k: number) => fromBase64(cosignatureLine(t, `witness.example/w${k}`, W[k]!.publicKey, (m) => ed25519Sign(W[k]!.secretKey, m), 1_800_000_000n).trim().split(" ")[2]!);
    const cosignedA = { ...stateOf(noteA), cosignatures: [0, 1].map((k) => ({ name: `witness.example/w${k}`, sig: cosign(k) })) };
    const b = await grow(4);
    const shownB = { type: "log_state" as const, ...stateOf(b.note), cosigned: { ...cosignedA, consistency: w.consistency(cosignedA.size, b.size)! } };
    new LogCheck(id, HOST.publicKey, policy(2)).check(shownB);
    const kept = readFileSync(checkpointPath(id), "utf8");
    // The log grows; the witnesses' cosigned checkpoint is still the one from before B, which this client was shown.
    const c = await grow(2);
    const fromB = w.logState(b.size, [])!;
    const shownC = { type: "log_state" as const, ...stateOf(c.note), consistency: fromB.consistency!, cosigned: { ...cosignedA, consistency: w.consistency(cosignedA.size, c.size)! } };
    w.close("done");
    const next = new LogCheck(id, HOST.publicKey, policy(2));
    next.request();
    expect(codeOf(() => next.check(shownC))).toBe("log_unwitnessed");
    expect(readFileSync(checkpointPath(id), "utf8")).toBe(kept);
    // The same answer to a client that remembered nothing yet passes: the rule is about what this client saw.
    expect(codeOf(() => new LogCheck(`wit-${++servers}:7447`, HOST.publicKey, policy(2)).check(shownC))).toBe("no error");
  });
});
