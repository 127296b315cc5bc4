/**
 * `serve --witness` on a cluster (TRANSCRIPT.md §4.5): two nodes in this
 * process on one real PostgreSQL and one real Redis, and a real witness over
 * HTTP. Only the core submits its checkpoints; the cosigned one is kept in
 * PostgreSQL (`log_cosigned`), so that when the core dies the node that
 * takes over answers `log_proof` with it at once (the witness meanwhile
 * gone: nothing new to cosign it with), its consistency proof reaching the
 * new core's checkpoint, and goes on from it once the witness is back.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fingerprint } from "../../src/fingerprint.ts";
import type { Message } from "../../src/protocol/messages.ts";
import type { ClusterNode } from "../../src/server/node.ts";
import { serveWitness } from "../../src/server/witnesshttp.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { noteCosignatures, parseCosignerKey } from "../../src/transcript/cosignature.ts";
import { defaultOrigin } from "../../src/transcript/format.ts";
import { formatVerifierKey, parseVerifierKey } from "../../src/transcript/note.ts";
import { Witness } from "../../src/transcript/witness.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { type PostgresHandle, type RedisHandle, requireEngines, startPostgres, startRedis } from "../engines.ts";
import { runCli } from "../cli.ts";
import { tempDir } from "../transcript/helpers.ts";
import { type Cred, registerWithTicket } from "./chat-helpers.ts";
import { HOST_KEY, LEASE_MS, clusterLogin, startClusterNode } from "./cluster-helpers.ts";
import { type LogEvent, type RawSession, untilMessage, waitFor } from "./helpers.ts";

const ready = requireEngines("postgres", "redis");
setDefaultTimeout(120_000);

describe.skipIf(!ready)("witnesses on a cluster of two nodes", () => {
  let pg: PostgresHandle;
  let redis: RedisHandle;
  const nodes: ClusterNode[] = [];
  const open: RawSession[] = [];
  const events: LogEvent[] = [];
  const witnessDir = tempDir("cluster-witness");
  const logVkey = formatVerifierKey(defaultOrigin(HOST_KEY.key.publicKey), HOST_KEY.key.publicKey);
  let witness: Witness;
  let http: ReturnType<typeof serveWitness>;
  let port = 0;

  /** The witness (its state in witnessDir, kept across restarts), on the same port each time. */
  function startWitness(): void {
    witness = new Witness({ dir: witnessDir, logs: [parseVerifierKey(logVkey)] });
    http = serveWitness(witness, { hostname: "127.0.0.1", port });
    port = http.port ?? port;
  }

  async function startNode(name: string): Promise<ClusterNode> {
    const n = await startClusterNode({ pg, redis }, name, events, {}, {
      witnesses: { targets: [{ url: `http://127.0.0.1:${port}`, vkey: witness.vkey, verifier: parseCosignerKey(witness.vkey) }], quorum: 1, graceMs: 60_000 },
      // A checkpoint for every few lines: rounds while the test runs.
      journal: { ...DEFAULT_WRITER, fsync: "always", version: "test", history: 50, checkpointEvery: 2, checkpointIntervalMs: 200 },
    });
    nodes.push(n);
    return n;
  }

  const login = (p: number, c: Cred): Promise<RawSession> => clusterLogin(p, c, open);

  /** Says `text` in ops (joined first) and waits for its ack. */
  async function say(s: RawSession, text: string): Promise<void> {
    const id = ++said;
    s.send({ type: "say", id, room: "ops", text });
    const { match, seen } = await untilMessage(s, (m) => m.type === "ack" && m.id === id, 20_000);
    if (!match) throw new Error(`test: no ack for ${text}; seen ${JSON.stringify(seen)}`);
  }
  let said = 0;

  async function joinOps(s: RawSession): Promise<void> {
    s.send({ type: "join", room: "ops" });
    if (!(await untilMessage(s, (m) => m.type === "history_end", 20_000)).match) throw new Error("test: no history_end");
  }

  async function kept(): Promise<{ size: number; note: string } | null> {
    const sql = openPg(pg.url, { max: 1 });
    try {
      const [r] = await sql`SELECT size, note FROM log_cosigned`;
      return r ? { size: Number(r.size), note: r.note as string } : null;
    } finally {
      await sql.close();
    }
  }

  async function cosignedState(s: RawSession): Promise<Message<"log_state">> {
    s.send({ type: "log_proof", cosigned: true });
    return (await untilMessage(s, (m) => m.type === "log_state", 20_000)).match as Message<"log_state">;
  }

  beforeAll(async () => {
    [pg, redis] = await Promise.all([startPostgres({ fsync: false }), startRedis()]);
    startWitness();
  });

  afterAll(async () => {
    for (const s of open) s.close();
    for (const n of nodes) await n.stop().catch(() => {});
    http?.stop(true);
    await Promise.all([pg?.stop(), redis?.stop()]);
  });

  test("only the core submits; the cosigned checkpoint is in PostgreSQL; a new core answers with it at once and goes on from it", async () => {
    const a = await startNode("wit-a");
    const b = await startNode("wit-b");
    expect(a.isCore).toBe(true);
    await waitFor("both edges to hear the core", () => a.edge.link.available() && b.edge.link.available(), 10_000, 20);
    const alice = await registerWithTicket(b.port, "alice", "witnessed across the cluster");
    const s = await login(b.port, alice);
    await joinOps(s);
    for (let i = 0; i < 4; i++) await say(s, `line ${i}`);
    // The witness cosigns a checkpoint; it is kept in the database, and log_proof on b's session (the core on a) carries it.
    let first: { size: number; note: string } | null = null;
    for (const end = Date.now() + 30_000; Date.now() < end && !first; await Bun.sleep(100)) first = await kept();
    expect(first).not.toBeNull();
    expect(noteCosignatures(first!.note, [parseCosignerKey(witness.vkey)])).toHaveLength(1);
    const before = await cosignedState(s);
    expect(before.cosigned?.cosignatures.map((c) => c.name)).toEqual([parseCosignerKey(witness.vkey).name]);
    // Only the core submitted.
    expect(events.filter((e) => e.event === "witness_cosigned").every((e) => e.fields.node === "wit-a")).toBe(true);

    // The witness goes away, then the core dies: b takes over with nothing new cosigned.
    http.stop(true);
    const keptSize = (await kept())!.size;
    await a.crash();
    await waitFor("b to become the core", () => b.isCore, 4 * LEASE_MS + 10_000, 50);
    const s2 = await login(b.port, alice);
    await joinOps(s2);
    await say(s2, "after the takeover");
    const after = await cosignedState(s2);
    expect(after.cosigned).toMatchObject({ size: keptSize, cosignatures: [{ name: parseCosignerKey(witness.vkey).name }] });
    expect(after.size).toBeGreaterThan(keptSize);

    // The witness is back (its state kept): the new core's rounds go on from the kept size.
    startWitness();
    let later = keptSize;
    for (const end = Date.now() + 30_000; Date.now() < end && later <= keptSize; await Bun.sleep(100)) later = (await kept())!.size;
    expect(later).toBeGreaterThan(keptSize);
    expect(events.some((e) => e.event === "witness_cosigned" && e.fields.node === "wit-b")).toBe(true);
    expect(events.filter((e) => e.event === "witness_conflict")).toEqual([]);

    // An auditor: the cosigned checkpoint kept in the database, checked against the cluster's log with the witness's key.
    const file = join(tempDir("cluster-cosigned"), "cosigned.checkpoint");
    const printed = await runCli("transcript", "checkpoint", "--cosigned", "--database", pg.url);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe((await kept())!.note);
    writeFileSync(file, printed.stdout);
    const verified = await runCli("transcript", "verify", "--database", pg.url, "--checkpoint", file, "--witness", witness.vkey, "--host-key", fingerprint(HOST_KEY.key.publicKey));
    expect(verified.code).toBe(0);
  });
});
