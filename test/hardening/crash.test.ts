/**
 * kill -9 of the real `securechat serve` process, round after round, while
 * registrations, password logins and a burst of room messages are in
 * flight. After each kill the server is restarted on the same data
 * directory and must start; the database must pass `PRAGMA integrity_check`
 * and hold every account whose registration was answered with `welcome`;
 * every `ack` that carried tseq/head must name an entry of the transcript
 * (that seq, that hash, the message's room seq); and the transcript must
 * verify.
 */
import { afterAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { type RawSession, type RawUser, freshPath, rawSession, sleep } from "../server/helpers.ts";
import { PASSWORD, type Proc, type ServerProc, killProc, loginSession, receiveAll, registerSession, spawnServer, transcriptEntries } from "./helpers.ts";

const ROUNDS = 4;
const REGISTRATIONS = 4;
const BURST = 80;

const procs: Proc[] = [];
const sockets: RawSession[] = [];

afterAll(async () => {
  for (const s of sockets) s.conn.destroy();
  for (const p of procs) await killProc(p);
});

interface Ack {
  round: number;
  id: number;
  seq: number;
  tseq?: number;
  head?: string;
}

type RegOutcome = "welcome" | "closed" | `other:${string}`;

test(`kill -9 in a loop (${ROUNDS} rounds) during registrations, logins and a chat burst: restarts clean, nothing acknowledged is lost`, async () => {
  const data = freshPath("crash-data");
  const transcriptDir = join(data, "transcript");
  const welcomed = new Map<string, RawUser>();
  const acks: Ack[] = [];
  const summary: string[] = [];

  /** Everything acknowledged so far must be there. */
  async function check(round: number): Promise<void> {
    const db = new Database(join(data, "securechat.db"), { readonly: true });
    try {
      expect(db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").get()!.integrity_check).toBe("ok");
      const names = new Set(db.query<{ name: string }, []>("SELECT name FROM accounts").all().map((r) => r.name));
      expect([...welcomed.keys()].filter((n) => !names.has(n))).toEqual([]);
    } finally {
      db.close();
    }
    const entries = transcriptEntries(transcriptDir);
    const missing = acks.flatMap((a) => {
      const e = entries.get(a.tseq!);
      if (!e) return [{ ...a, problem: "no entry" }];
      if (e.hash !== a.head) return [{ ...a, problem: `hash ${e.hash}` }];
      const j = JSON.parse(e.line) as { type: string; room_seq?: number };
      if (j.type !== "message" || j.room_seq !== a.seq) return [{ ...a, problem: `entry ${e.line}` }];
      return [];
    });
    expect(missing).toEqual([]);
    const report = await verifyTranscript(transcriptDir);
    if (!report.ok) console.log(`crash: round ${round}: verify problem ${JSON.stringify(report.problem)}`);
    expect(report.problem).toBeNull();
    expect(report.ok).toBe(true);
    summary.push(`after round ${round}: accounts ok (${welcomed.size} acknowledged), ${acks.length} acks found in ${entries.size} entries, ${report.files} file(s), recoveries ${JSON.stringify(report.recoveries ?? [])}`);
  }

  let srv: ServerProc | null = null;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      srv = await spawnServer(data, [], procs);
      if (round > 0) await check(round - 1);
      const port = srv.port;

      // A chatter in the room first (its registration is acknowledged, so it must survive).
      const chatterName = `chat${round}`;
      const { s: chatter, u } = await registerSession(port, chatterName);
      sockets.push(chatter);
      welcomed.set(chatterName, u);
      chatter.send({ type: "join", room: "lobby" });

      let ackCount = 0;
      let gotAcks!: () => void;
      const enoughAcks = new Promise<void>((r) => (gotAcks = r));
      const reader = (async () => {
        for (;;) {
          let msgs;
          try {
            msgs = await receiveAll(chatter, 20_000);
          } catch {
            return;
          }
          for (const m of msgs) {
            if (m.type !== "ack") continue;
            ackCount++;
            if (m.tseq !== undefined && m.head !== undefined) acks.push({ round, id: m.id, seq: m.seq, tseq: m.tseq, head: String(m.head) });
            if (ackCount >= 10) gotAcks();
          }
        }
      })();

      // Registrations and logins leave together with the burst.
      const regs = Array.from({ length: REGISTRATIONS }, async (_, i): Promise<RegOutcome> => {
        const name = `r${round}u${i}`;
        const identity = ed25519Generate();
        let s: RawSession;
        try {
          s = await rawSession(port);
        } catch {
          return "closed";
        }
        sockets.push(s);
        try {
          s.send({ type: "register", user: name, identity_key: identity.publicKey, sig: s.sign(identity), password: PASSWORD });
          const m = await s.receive(20_000);
          if (m.type === "welcome") {
            welcomed.set(name, { user: name, password: PASSWORD, identity });
            return "welcome";
          }
          return `other:${m.type === "error" ? m.code : m.type}`;
        } catch (e) {
          return (e as { code?: string }).code === "connection_closed" ? "closed" : `other:${String(e)}`;
        }
      });
      const earlier = [...welcomed.values()].filter((w) => w.user !== chatterName).slice(-2);
      const logins = earlier.map(async (w): Promise<string> => {
        try {
          sockets.push(await loginSession(port, w));
          return "welcome";
        } catch (e) {
          return String((e as Error).message).slice(0, 80);
        }
      });
      for (let i = 1; i <= BURST; i++) chatter.send({ type: "say", id: i, room: "lobby", text: `round ${round} message ${i}` });

      await Promise.race([enoughAcks, sleep(8000)]);
      await sleep(Math.floor(Math.random() * 250));
      srv.proc.kill("SIGKILL");
      await killProc(srv.proc);
      expect(srv.proc.signalCode).toBe("SIGKILL");

      const regResults = await Promise.all(regs);
      const loginResults = await Promise.all(logins);
      await reader;
      for (const s of sockets.splice(0)) s.conn.destroy();
      expect(regResults.filter((r) => r !== "welcome" && r !== "closed")).toEqual([]);
      summary.push(`round ${round}: port ${port}, registrations ${JSON.stringify(regResults)}, logins ${JSON.stringify(loginResults)}, acks ${ackCount}/${BURST}`);
    }

    srv = await spawnServer(data, [], procs);
    await check(ROUNDS - 1);
    expect(acks.length).toBeGreaterThan(0);
    await killProc(srv.proc, "SIGTERM");
    expect(await srv.stderr).toBe("");
  } finally {
    console.log(`crash:\n  ${summary.join("\n  ")}`);
    for (const s of sockets) s.conn.destroy();
    for (const p of procs) await killProc(p);
  }
}, 120_000);
