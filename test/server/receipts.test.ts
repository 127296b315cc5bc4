/**
 * Entries with their proofs (PROTOCOL.md §7.13 `entries`): a user gets the
 * line of its own message, direct message (either way), edit or delete with
 * the inclusion proof, and the pair verifies as a receipt against the signed
 * checkpoint; the line of anyone else's entry is withheld as `private`; the
 * lines of one answer are bounded (`later` past LOG_ENTRY_BYTES_MAX); a line
 * the log no longer holds as the tree signed it is `unreadable`, never sent.
 * Over the raw protocol against an in-process server recording to a real
 * transcript, and against logProofAnswer directly for the bounds.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { LOG_ENTRY_BYTES_MAX } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessageBytes } from "../../src/protocol/messages.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { logProofAnswer } from "../../src/server/logproof.ts";
import type { Journal } from "../../src/store/journal.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { readLinesBySeq } from "../../src/transcript/lineat.ts";
import { formatVerifierKey, parseVerifierKey } from "../../src/transcript/note.ts";
import { formatProof, verifyProof } from "../../src/transcript/proof.ts";
import { checkpointText, formatNote } from "../../src/transcript/note.ts";
import { toBase64 } from "../../src/bytes.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "../transcript/helpers.ts";
import { type RawSession, freshPath, passwordLogin, rawSession, registerRaw, startServer, untilMessage } from "./helpers.ts";

const PW = "receipts test passphrase";
const NET = 30_000;

/** The signed note a log_state carries. */
function noteOf(m: Message<"log_state">): string {
  return formatNote(checkpointText({ origin: m.origin, size: m.size, root: m.root }), [`\u2014 ${m.origin} ${toBase64(m.sig)}\n`]);
}

describe("log_proof with entries, over the wire", () => {
  test("own messages and direct messages come with their lines and verify as receipts; others' are private", async () => {
    const dataDir = freshPath("receipts");
    const hostKey = loadOrCreateHostKey(dataDir).key;
    const journal = TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey, version: "test", log: silentLogger, history: 50 });
    const t = await startServer({ dataDir, journal });
    try {
      const alice = await registerRaw(t.port, "alice", PW);
      const bob = await registerRaw(t.port, "bob", PW);
      const login = async (u: typeof alice): Promise<RawSession> => {
        const s = await rawSession(t.port);
        expect((await passwordLogin(s, u.user, u.password, u.identity)).type).toBe("welcome");
        s.send({ type: "join", room: "lobby" });
        await untilMessage(s, (m) => m.type === "room");
        return s;
      };
      const a = await login(alice);
      const b = await login(bob);
      const tseqOf = async (s: RawSession, m: Message<"say" | "dm">): Promise<number> => {
        s.send(m);
        const ack = (await untilMessage(s, (x) => x.type === "ack" && x.id === m.id)).match as Message<"ack">;
        return ack.tseq!;
      };
      const aSay = await tseqOf(a, { type: "say", id: 1, room: "lobby", text: "alice's receipt, please" });
      const aDm = await tseqOf(a, { type: "dm", id: 2, to: "bob", text: "psst, bob" });
      const bSay = await tseqOf(b, { type: "say", id: 3, room: "lobby", text: "bob's own words" });
      const leaves = [aSay - 1, aDm - 1, bSay - 1, 0];
      const ask = async (s: RawSession): Promise<Message<"log_state">> => {
        s.send({ type: "log_proof", leaves, entries: true });
        return (await untilMessage(s, (m) => m.type === "log_state")).match as Message<"log_state">;
      };
      const verifier = parseVerifierKey(formatVerifierKey((await ask(a)).origin, hostKey.publicKey));
      const receipt = (st: Message<"log_state">, i: number) =>
        verifyProof({ index: st.inclusion![i]!.leaf, extra: st.inclusion![i]!.entry!, hashes: st.inclusion![i]!.proof, checkpoint: noteOf(st) }, verifier);

      const forA = await ask(a);
      expect(forA.inclusion!.map((i) => i.withheld ?? "entry")).toEqual(["entry", "entry", "private", "private"]);
      expect(JSON.parse(new TextDecoder().decode(receipt(forA, 0).line))).toMatchObject({ type: "message", from: "alice", room: "lobby", text: "alice's receipt, please", seq: aSay });
      expect(JSON.parse(new TextDecoder().decode(receipt(forA, 1).line))).toMatchObject({ type: "direct", from: "alice", to: "bob", text: "psst, bob", seq: aDm });
      // The receipt as the client stores it is a tlog-proof@v1 text that verify-proof checks.
      expect(formatProof({ index: aSay - 1, extra: forA.inclusion![0]!.entry!, hashes: forA.inclusion![0]!.proof, checkpoint: noteOf(forA) })).toContain(`index ${aSay - 1}\n`);

      // Bob may see the direct message to him and his own message, not alice's room message or the server's entries.
      const forB = await ask(b);
      expect(forB.inclusion!.map((i) => i.withheld ?? "entry")).toEqual(["private", "entry", "entry", "private"]);
      expect(JSON.parse(new TextDecoder().decode(receipt(forB, 2).line))).toMatchObject({ from: "bob", text: "bob's own words" });
      // Without `entries`: the proofs alone, as before.
      a.send({ type: "log_proof", leaves });
      const plain = (await untilMessage(a, (m) => m.type === "log_state")).match as Message<"log_state">;
      expect(plain.inclusion!.every((i) => i.entry === undefined && i.withheld === undefined)).toBe(true);
      a.close();
      b.close();
    } finally {
      await t.server.stop();
    }
  }, NET);
});

describe("logProofAnswer: bounds and damage", () => {
  const HOST = hostKeyPair(57);

  /** A closed transcript of `texts` by alice, as a journal that answers from it. */
  async function journalOf(texts: string[]): Promise<{ journal: Journal; dir: string }> {
    const dir = join(tempDir("receipts"), "transcript");
    const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir, hostKey: HOST, version: "t", log: silentLogger });
    texts.forEach((text, i) => w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text }));
    w.checkpoint();
    await new Promise((r) => setImmediate(r));
    const state = (from: number | undefined, leaves: readonly number[]) => w.logState(from, leaves);
    return { journal: { logState: state, entryLines: (seqs: readonly number[]) => readLinesBySeq(dir, seqs) } as unknown as Journal, dir };
  }

  test("the lines of one answer stay within LOG_ENTRY_BYTES_MAX (the rest: later), and the answer fits a frame", async () => {
    // Leaf 0 is the server_start; the messages are leaves 1 … 16.
    const messages = Array.from({ length: 16 }, (_, i) => i + 1);
    const { journal } = await journalOf(Array.from({ length: 16 }, (_, i) => `${i}`.padEnd(4096, '"')));
    const st = logProofAnswer(journal, { type: "log_proof", leaves: messages, entries: true }, "alice", silentLogger) as Message<"log_state">;
    const got = st.inclusion!.filter((i) => i.entry).map((i) => i.entry!.length);
    expect(got.length).toBe(1); // each line is over 8 KiB of escaped quotes
    expect(got.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(LOG_ENTRY_BYTES_MAX);
    expect(st.inclusion!.slice(1).every((i) => i.withheld === "later")).toBe(true);
    // It decodes as the client would (the rules hold) and fits a record.
    expect(encodeMessageBytes(st).length).toBeLessThan(65520);
    expect(decodeMessage(encodeMessageBytes(st)).type).toBe("log_state");
    const small = logProofAnswer((await journalOf(Array.from({ length: 16 }, (_, i) => `short ${i}`))).journal, { type: "log_proof", leaves: messages, entries: true }, "alice", silentLogger) as Message<"log_state">;
    expect(small.inclusion!.every((i) => i.entry !== undefined)).toBe(true);
  });

  test("a line changed on disk after the tree signed it is unreadable, not sent", async () => {
    const { journal, dir } = await journalOf(["one", "two", "three"]);
    const name = readdirSync(dir).find((f) => f.endsWith(".jsonl"))!;
    writeFileSync(join(dir, name), readFileSync(join(dir, name), "utf8").replace('"text":"two"', '"text":"TWO"'));
    const events: string[] = [];
    const st = logProofAnswer(journal, { type: "log_proof", leaves: [1, 2], entries: true }, "alice", { info: () => {}, warn: (e) => void events.push(e) }) as Message<"log_state">;
    expect(st.inclusion!.map((i) => i.withheld ?? "entry")).toEqual(["entry", "unreadable"]);
    expect(events).toEqual(["log_entry_unreadable"]);
  });
});
