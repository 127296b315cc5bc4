/**
 * The client's receipts (src/client/receipts.ts, TRANSCRIPT.md Appendix A):
 * asked for in batches of at most 16, one request at a time, paced; each
 * checked — signed by the pinned host key, the line at the acked leaf, the
 * line the message sent — before it is kept as a tlog-proof@v1 text that
 * verify-proof accepts; a server that withholds, swaps or changes the line
 * makes a loud failure, never a kept receipt. Against answers the server's
 * own code (logProofAnswer) makes from a real transcript writer.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Acked, RECEIPT_GAP_MS, RECEIPTS_PENDING_MAX, Receipts } from "../../src/client/receipts.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { logProofAnswer } from "../../src/server/logproof.ts";
import type { Journal } from "../../src/store/journal.ts";
import { readLinesBySeq } from "../../src/transcript/lineat.ts";
import { formatVerifierKey, parseVerifierKey } from "../../src/transcript/note.ts";
import { formatProof, parseProof, verifyProof } from "../../src/transcript/proof.ts";
import { type ReceiptResult, checkReceipts } from "../../src/transcript/receipts.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { EXIT } from "../../src/commands/exit.ts";
import { REPO } from "../hardening/helpers.ts";
import { auditorKeyPair, hostKeyPair, tempDir } from "../transcript/helpers.ts";
import { HostileServer, polite } from "./hostile-server.ts";
import { TestLog } from "../transcript/testlog.ts";

const HOST = hostKeyPair(61);

/** A transcript where alice said `texts` in lobby (seq 2 …), and what she was acked with. */
async function chatLog(texts: string[], sealed = false) {
  const dir = join(tempDir("receipts"), "transcript");
  const seal = sealed ? { auditorKey: auditorKeyPair(63).publicKey } : {};
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir, hostKey: HOST, version: "t", log: silentLogger, ...seal });
  const acked: Acked[] = texts.map((text, i) => {
    const { entry } = w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text });
    return { id: i + 1, req: { type: "say", id: i + 1, room: "lobby", text }, tseq: entry.seq, head: entry.hash };
  });
  w.checkpoint();
  await new Promise((r) => setImmediate(r));
  const journal = { logState: (f: number | undefined, l: readonly number[]) => w.logState(f, l), entryLines: (seqs: readonly number[]) => readLinesBySeq(dir, seqs) } as unknown as Journal;
  const answer = (req: Message<"log_proof">, user = "alice") => logProofAnswer(journal, req, user, silentLogger) as Message<"log_state">;
  return { acked, answer, origin: w.origin, close: () => w.close("done") };
}

function client(now = () => 0) {
  const kept: Record<string, unknown>[] = [];
  const said: string[] = [];
  const r = new Receipts(() => "alice", () => HOST.publicKey, (l) => void kept.push(l as Record<string, unknown>), (t) => void said.push(t), now);
  return { r, kept, said };
}

describe("receipts", () => {
  test("batched by 16, one request at a time; each kept receipt verifies with verify-proof's code and the vkey alone", async () => {
    const log = await chatLog(Array.from({ length: 40 }, (_, i) => `message ${i} "quoted" \\ and ünïcode`));
    let clock = 0;
    const { r, kept, said } = client(() => clock);
    for (const a of log.acked) r.acked(a);
    const sizes: number[] = [];
    while (r.outstanding > 0) {
      expect(r.due()).toBe(0);
      const req = r.request({ type: "log_proof" });
      sizes.push(req.leaves!.length);
      expect(req.entries).toBe(true);
      // One at a time: nothing more is due until this one is answered; then not before the gap.
      expect(r.due()).toBeNull();
      r.answer(log.answer(req));
      if (r.outstanding > 0) expect(r.due()).toBe(RECEIPT_GAP_MS);
      clock += RECEIPT_GAP_MS;
    }
    expect(sizes).toEqual([16, 16, 8]);
    expect(said).toEqual([]);
    expect(kept.length).toBe(40);
    const vkey = parseVerifierKey(formatVerifierKey(log.origin, HOST.publicKey));
    for (const [i, k] of kept.entries()) {
      expect(k).toMatchObject({ kind: "receipt", id: i + 1, room: "lobby", tseq: log.acked[i]!.tseq });
      const ok = verifyProof(parseProof(k.proof as string), vkey);
      expect(JSON.parse(new TextDecoder().decode(ok.line))).toMatchObject({ from: "alice", text: log.acked[i]!.req.text, seq: log.acked[i]!.tseq });
    }
    log.close();
  });

  test("a line withheld as private, another message's line, a changed text, another key: loud failures, nothing kept", async () => {
    const log = await chatLog(["one", "two", "three", "four"]);
    const [a1, a2, a3, a4] = log.acked as [Acked, Acked, Acked, Acked];
    const { r, kept, said } = client();
    // The server calls alice's message someone else's.
    r.acked(a1);
    r.answer(log.answer(r.request({ type: "log_proof" }), "mallory"));
    // The ack named leaf of "two" for a message that said something else.
    r.acked({ ...a2, req: { ...a2.req, text: "not what was recorded" }, head: undefined });
    r.answer(log.answer(r.request({ type: "log_proof" })));
    // The ack's hash is not the entry's.
    r.acked({ ...a3, head: a4.head });
    r.answer(log.answer(r.request({ type: "log_proof" })));
    // A line changed in transit: the proof no longer leads to the signed root.
    r.acked(a4);
    const st = log.answer(r.request({ type: "log_proof" }));
    const forged = new TextEncoder().encode(new TextDecoder().decode(st.inclusion![0]!.entry!).replace('"four"', '"FOUR"'));
    r.answer({ ...st, inclusion: [{ ...st.inclusion![0]!, entry: forged }] });
    expect(kept).toEqual([]);
    expect(r.failures.length).toBe(4);
    expect(said.every((s) => s.startsWith("RECEIPT FAILED"))).toBe(true);
    expect(said[0]).toContain("not yours");
    expect(said[1]).toContain("another text");
    expect(said[2]).toContain("another hash");
    expect(said[3]).toContain("is not leaf");
    // Checked under another host key than the one pinned: refused too.
    const other = new Receipts(() => "alice", () => hostKeyPair(62).publicKey, () => {}, () => {});
    other.acked(a1);
    other.answer(log.answer(other.request({ type: "log_proof" })));
    expect(other.failures[0]).toContain("not the log's");
    log.close();
  });

  test("a sealing server: the text is the auditor's, so everything but the text is checked, and the receipt is kept", async () => {
    const log = await chatLog(["for the auditor only"], true);
    const { r, kept, said } = client();
    r.acked(log.acked[0]!);
    r.answer(log.answer(r.request({ type: "log_proof" })));
    expect(said).toEqual([]);
    expect(kept.length).toBe(1);
    const line = JSON.parse(new TextDecoder().decode(parseProof(kept[0]!.proof as string).extra!)) as Record<string, unknown>;
    expect([line.text, typeof line.sealed]).toEqual([undefined, "string"]);
    // Sealed or not, a receipt for another room is refused.
    const other = client();
    other.r.acked({ ...log.acked[0]!, req: { ...(log.acked[0]!.req as Message<"say">), room: "elsewhere" } });
    other.r.answer(log.answer(other.r.request({ type: "log_proof" })));
    expect(other.said[0]).toContain("is not a message to elsewhere");
    log.close();
  });

  test("what is put off (later, or not yet covered) is asked again; a lost connection asks again; the waiting list is bounded", async () => {
    const log = await chatLog(Array.from({ length: 3 }, (_, i) => `x${i}`.padEnd(4000, '"')));
    const { r, kept } = client();
    for (const a of log.acked) r.acked(a);
    r.acked({ id: 99, req: { type: "say", id: 99, room: "lobby", text: "beyond the checkpoint" }, tseq: 10_000 });
    const first = r.request({ type: "log_proof" });
    expect(first.leaves!.length).toBe(4);
    r.lost();
    expect(r.outstanding).toBe(4);
    r.answer(log.answer(r.request({ type: "log_proof" })));
    // Each line is over 8 KiB: one per answer; the leaf past the checkpoint waits.
    expect(kept.length).toBe(1);
    expect(r.outstanding).toBe(3);
    r.answer(log.answer(r.request({ type: "log_proof" })));
    r.answer(log.answer(r.request({ type: "log_proof" })));
    expect(kept.length).toBe(3);
    expect(r.outstanding).toBe(1);
    expect(r.failures).toEqual([]);
    log.close();
    const many = client();
    for (let i = 0; i <= RECEIPTS_PENDING_MAX + 1; i++) many.r.acked({ id: i, req: { type: "say", id: i, room: "lobby", text: "flood" }, tseq: i + 1 });
    expect([many.r.outstanding, many.r.dropped, many.said.length]).toEqual([RECEIPTS_PENDING_MAX, 2, 1]);
  });
});

describe("transcript receipts: the file as the client kept it, checked offline", () => {
  /** A client transcript with alice's acks and the receipts the client kept for them. */
  async function keptFile(texts: string[]) {
    const log = await chatLog(texts);
    const { r, kept } = client();
    for (const a of log.acked) r.acked(a);
    while (r.outstanding > 0) r.answer(log.answer(r.request({ type: "log_proof" })));
    log.close();
    const acks = log.acked.map((a) => ({ kind: "ack", id: a.id, room: "lobby", seq: a.id, ts: 1, text: a.req.text, tseq: a.tseq, head: a.head }));
    const lines = [...acks, ...kept];
    const vkey = parseVerifierKey(formatVerifierKey(log.origin, HOST.publicKey));
    const check = async (ls: object[], user: string | null = null) => {
      const path = join(tempDir("receipts"), "alice.jsonl");
      writeFileSync(path, ls.map((l) => `${JSON.stringify(l)}\n`).join(""));
      const seen: ReceiptResult[] = [];
      const sum = await checkReceipts(path, vkey, user, (x) => void seen.push(x));
      return { ...sum, why: seen.filter((x) => !x.ok).map((x) => x.text) };
    };
    return { lines, acks, kept, check };
  }

  test("every receipt the client kept passes; each kind of forgery fails, naming why", async () => {
    const f = await keptFile(["one", "two", "three"]);
    expect(await f.check(f.lines)).toEqual({ checked: 3, failed: 0, why: [] });
    // The ack line changed after the fact: the receipt's line says otherwise.
    const acks = f.acks.map((a, i) => (i === 1 ? { ...a, text: "I said something else" } : a));
    expect((await f.check([...acks, ...f.kept])).why).toEqual(["its entry has another text"]);
    // A receipt moved to another ack: its proof is of another leaf.
    const moved = f.kept.map((k, i) => (i === 0 ? { ...k, tseq: f.kept[1]!.tseq } : k));
    expect((await f.check([...f.acks, ...moved])).why[0]).toContain("not");
    // The proof's line edited: the proof no longer leads to the signed root.
    const p = f.kept[2]!.proof as string;
    const edited = p.replace(/^extra (.*)$/m, (_, b64: string) => `extra ${Buffer.from(Buffer.from(b64, "base64").toString().replace('"three"', '"THREE"')).toString("base64")}`);
    expect((await f.check([...f.acks, ...f.kept.slice(0, 2), { ...f.kept[2]!, proof: edited }])).why[0]).toContain("is not leaf");
    // No ack for it, or another user's file.
    expect((await f.check(f.kept)).why).toEqual(f.kept.map((k) => `no ack line with tseq ${String(k.tseq)} before it`));
    expect((await f.check(f.lines, "bob")).failed).toBe(3);
  });
});

test("transcript receipts: a receipt whose proof verifies but whose line is no entry (a log that signed such lines) is a failed receipt, not a crash", async () => {
  for (const line of ["entry 0", "null", "[1]"]) {
    const log = new TestLog();
    log.leaves = [new TextEncoder().encode(line)];
    const proof = formatProof({ index: 0, extra: log.leaves[0]!, hashes: [], checkpoint: log.note(1) });
    const path = join(tempDir("receipts"), "alice.jsonl");
    writeFileSync(path, `${JSON.stringify({ kind: "ack", id: 1, room: "lobby", seq: 1, ts: 1, text: "hi", tseq: 1 })}\n${JSON.stringify({ kind: "receipt", id: 1, room: "lobby", tseq: 1, proof })}\n`);
    const seen: ReceiptResult[] = [];
    expect(await checkReceipts(path, parseVerifierKey(log.vkey), null, (x) => void seen.push(x))).toEqual({ checked: 1, failed: 1 });
    expect(seen[0]!.text).toBe("its line is not an entry");
  }
});

describe("chat --transcript against a server that records what it likes", () => {
  const NET = 30_000;
  const servers: HostileServer[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.stop();
  });

  /**
   * A server with a real signed log, recording each say as `record(text)`
   * says: acked with its tseq and head once a checkpoint covers it, and
   * log_proof answered as the reference server answers it — and, on the
   * first connection, followed by `unasked` more of its states nobody asked for.
   */
  function lyingServer(record: (text: string) => string, unasked = 0): HostileServer {
    const dir = join(tempDir("receipts"), "transcript");
    let w: TranscriptWriter | null = null;
    const s = HostileServer.start({
      message: (c, m, n) => {
        if (m.type === "say") {
          const { entry } = w!.append("message", { room: m.room, room_seq: ++c.acked, from: c.user, text: record(m.text) });
          w!.checkpoint();
          setImmediate(() => c.send({ type: "ack", id: m.id, seq: c.acked, ts: Date.now(), tseq: entry.seq, head: entry.hash }));
        } else if (m.type === "log_proof") {
          const journal = { logState: (f: number | undefined, l: readonly number[]) => w!.logState(f, l), entryLines: (seqs: readonly number[]) => readLinesBySeq(dir, seqs) } as unknown as Journal;
          c.send(logProofAnswer(journal, m, c.user, silentLogger));
          if (n === 1) for (let i = 0; i < unasked; i++) c.send(logProofAnswer(journal, { type: "log_proof" }, c.user, silentLogger));
        } else polite(c, m);
      },
    });
    w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir, hostKey: s.hostKey, version: "t", log: silentLogger });
    servers.push(s);
    s.install("alice");
    return s;
  }

  async function chat(s: HostileServer, input: string, file: string) {
    const proc = Bun.spawn([process.execPath, "src/main.ts", "chat", "--user", "alice", "--server", s.address, "--room", "lobby", "--transcript", file], { cwd: REPO, env: { ...process.env }, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    proc.stdin.write(input);
    await proc.stdin.end();
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0 && code !== EXIT.LOG) throw new Error(`chat: exit ${code}: ${stderr}`);
    const lines = readFileSync(file, "utf8").split("\n").slice(0, -1).map((l) => JSON.parse(l) as Record<string, unknown>);
    return { code, stderr, lines };
  }

  test("an honest log: a receipt per message, exit 0; a log that records another text: RECEIPT FAILED, no receipt, exit 6", async () => {
    const honest = await chat(lyingServer((t) => t), "one\ntwo\n", join(tempDir("receipts"), "alice.jsonl"));
    expect([honest.code, honest.stderr]).toEqual([0, ""]);
    expect(honest.lines.filter((l) => l.kind === "receipt").map((l) => l.id)).toEqual([1, 2]);
    const lying = await chat(lyingServer((t) => (t === "two" ? "something else" : t)), "one\ntwo\n", join(tempDir("receipts"), "alice.jsonl"));
    expect(lying.code).toBe(EXIT.LOG);
    expect(lying.stderr).toContain("RECEIPT FAILED for your message 2");
    expect(lying.stderr).toContain("another text");
    expect(lying.lines.filter((l) => l.kind === "receipt").map((l) => l.id)).toEqual([1]);
  }, NET);

  test("log states nobody asked for (each would cost a signature check and a rewritten, fsynced checkpoint file) end the connection as a protocol violation; the client reconnects and finishes", async () => {
    const r = await chat(lyingServer((t) => t, 50), "one\n", join(tempDir("receipts"), "alice.jsonl"));
    expect(r.stderr).toContain("protocol: the server sent the state of its log unasked");
    expect(r.code).toBe(0);
    expect(r.lines.filter((l) => l.kind === "receipt").map((l) => l.id)).toEqual([1]);
  }, NET);
});
