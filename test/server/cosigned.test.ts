/**
 * `log_proof` `cosigned` (PROTOCOL.md §7.13; TRANSCRIPT.md §4.5) against an
 * in-process server recording to a real transcript: asked for, the answer
 * carries the kept cosigned checkpoint with its cosignatures and the
 * consistency proof to the checkpoint shown, which the client's witness
 * check accepts; not asked for (an older client), the answer is as before;
 * a kept checkpoint of another origin, or none, is not shown.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { LogCheck } from "../../src/client/logcheck.ts";
import { ed25519Generate, ed25519Sign } from "../../src/crypto/index.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { cosignatureLine, formatCosignerKey, parseCosignerKey } from "../../src/transcript/cosignature.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { parseNote } from "../../src/transcript/note.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { freshPath, passwordLogin, rawSession, registerRaw, startServer, untilMessage } from "./helpers.ts";

const PW = "cosigned test passphrase";
const WITNESS = ed25519Generate();
const WNAME = "witness.example/w1";

async function ask(port: number, user: { user: string; password: string; identity: Parameters<typeof passwordLogin>[3] }, m: Message<"log_proof">): Promise<Message> {
  const s = await rawSession(port);
  expect((await passwordLogin(s, user.user, user.password, user.identity)).type).toBe("welcome");
  s.send(m);
  const got = await untilMessage(s, (x) => x.type === "log_state" || (x.type === "notice" && x.code === "no_log"));
  s.close();
  return got.match!;
}

describe("log_proof cosigned", () => {
  test("asked for: the kept checkpoint, its cosignature and the proof to the one shown, which a client requiring the witness accepts; not asked for: as before", async () => {
    const dataDir = freshPath("cosigned");
    const hostKey = loadOrCreateHostKey(dataDir).key;
    const journal = TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey, version: "test", log: { info() {}, warn() {} }, history: 50, checkpointEvery: 1 });
    let kept: { note: string; size: number } | null = null;
    const t = await startServer({ dataDir, journal, cosigned: () => kept });
    try {
      const alice = await registerRaw(t.port, "alice", PW);
      // No kept checkpoint yet: nothing to show.
      const bare = await ask(t.port, alice, { type: "log_proof", cosigned: true });
      expect(bare.type).toBe("log_state");
      expect(bare.type === "log_state" ? bare.cosigned : "not log_state").toBeUndefined();
      // Keep the current checkpoint, cosigned; then let the log grow past it.
      const state = journal.logState(undefined, [])!;
      const text = parseNote(state.note).text;
      kept = { note: state.note + cosignatureLine(text, WNAME, WITNESS.publicKey, (m) => ed25519Sign(WITNESS.secretKey, m), 1_800_000_000n), size: state.size };
      await registerRaw(t.port, "bob", PW);
      const answer = await ask(t.port, alice, { type: "log_proof", cosigned: true });
      if (answer.type !== "log_state") throw new Error(`no log_state: ${answer.type}`);
      expect(answer.size).toBeGreaterThan(state.size);
      expect(answer.cosigned?.size).toBe(state.size);
      expect(answer.cosigned?.cosignatures.map((c) => c.name)).toEqual([WNAME]);
      const check = new LogCheck(`cosigned-${t.port}`, hostKey.publicKey, { witnesses: [parseCosignerKey(formatCosignerKey(WNAME, WITNESS.publicKey))], quorum: 1 });
      check.request();
      check.check(answer);
      // An older client does not ask, and gets no member it does not know.
      const old = await ask(t.port, alice, { type: "log_proof" });
      expect(old.type === "log_state" && "cosigned" in old).toBe(false);
      // A kept checkpoint of another origin (the operator changed --log-origin) is not shown.
      kept = { note: kept.note.replace(/^[^\n]*/, "elsewhere.example/log"), size: kept.size };
      const foreign = await ask(t.port, alice, { type: "log_proof", cosigned: true });
      expect(foreign.type === "log_state" ? foreign.cosigned : "not log_state").toBeUndefined();
    } finally {
      await t.server.stop();
    }
  }, 60_000);
});
