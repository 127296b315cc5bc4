/**
 * The edge/core split (server.ts, edge.ts, core.ts, link.ts): the scripted
 * run of linkrun.ts once through a link that sends every message between the
 * halves as JSON and reads it back (what a link across processes carries),
 * recorded, and once through the in-process link. No secret used in the run
 * appears in the recording, as text, hex or base64; and every user saw the
 * same thing either way.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { toBase64 } from "../../src/bytes.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { type CorePort, type EdgePort, type SessionPort, SerializingLink } from "../../src/server/link.ts";
import type { TestServer } from "./helpers.ts";
import { ALICE, ALICE_LAPTOP, type Run, canon, forms, journaledServer, runScenario } from "./linkrun.ts";

const servers: TestServer[] = [];
afterAll(async () => {
  for (const t of servers) await t.server.stop();
});

function run(link?: (core: CorePort) => CorePort): Promise<Run> {
  return runScenario(async (dataDir, admins) => {
    const t = await journaledServer(dataDir, link, admins);
    servers.push(t);
    return t;
  });
}

describe("the edge and the core joined by a link that serializes every message", () => {
  const recorded: string[] = [];
  let serialized: Run;
  let direct: Run;

  test("the run completes through the serializing link, and the link carried every kind of message", async () => {
    serialized = await run((core) => new SerializingLink(core, (_direction, text) => void recorded.push(text)));
    const kinds = new Set(recorded.map((r) => (JSON.parse(r) as { kind: string }).kind));
    // (flow and close need a congested or misbehaving session: the round trip of every kind is the next describe's.)
    for (const k of ["open", "request", "change_password", "password_hashed", "password_set", "password_recorded", "drained", "post", "hold", "fill", "goodbye", "end", "closed"]) {
      expect(kinds).toContain(k);
    }
  }, 60_000);

  test("no password, ticket, session key or identity secret crosses the link, in any encoding", () => {
    expect(serialized.secrets.length).toBeGreaterThan(10);
    const all = recorded.join("\n");
    const found = serialized.secrets.flatMap((s) => forms(s).filter((f) => f.length >= 8 && all.includes(f)));
    expect(found).toEqual([]);
    // The check can see one: the public identity key does cross (the device the session stands on).
    expect(forms(ALICE.publicKey).some((f) => all.includes(f))).toBe(true);
  });

  test("every user saw exactly what the in-process link gives", async () => {
    direct = await run();
    expect(canon(serialized.seen)).toEqual(canon(direct.seen));
    expect(canon(direct.seen)["bob again"]?.at(-1)).toMatchObject({ type: "error", code: "message_unexpected" });
  }, 60_000);
});

describe("every link message survives its JSON round trip as the same call", () => {
  test("core to edge and edge to core, each kind", () => {
    const calls: unknown[][] = [];
    const rec =
      (name: string) =>
      (...args: unknown[]) =>
        void calls.push([name, ...args]);
    const edge: EdgePort = {
      post: rec("post"),
      hold: rec("hold"),
      fill: rec("fill"),
      goodbye: rec("goodbye"),
      end: rec("end"),
      closeWith: rec("closeWith"),
      changePassword: rec("changePassword"),
      passwordRecorded: rec("passwordRecorded"),
    };
    const session: SessionPort = {
      request: rec("request"),
      changePassword: rec("changePassword"),
      passwordHashed: rec("passwordHashed"),
      passwordSet: rec("passwordSet"),
      flow: rec("flow"),
      drained: rec("drained"),
      closed: rec("closed"),
    };
    let toEdge: EdgePort | null = null;
    const core: CorePort = {
      open: (facts, e) => {
        calls.push(["open", facts]);
        toEdge = e;
        return session;
      },
      loginFailed: rec("loginFailed"),
    };
    const texts: string[] = [];
    const link = new SerializingLink(core, (_d, text) => void texts.push(text));
    const facts = { user: "alice", session: "c2Vzc2lvbg==", ref: "0102030405ff", device: toBase64(ALICE.publicKey), ticket: "ab".repeat(32), loginTicket: null, expiresAt: 1234, method: "ticket" as const, source: "::1", since: 1000 };
    const toCore = link.open(facts, edge);
    link.loginFailed("10.0.0.1", "ticket", 5);
    const dm: Message = { type: "device_approve", key: ALICE_LAPTOP.publicKey, sig: new Uint8Array(64).fill(7) };
    toCore.request(dm);
    toCore.changePassword(3);
    toCore.passwordHashed(true);
    toCore.passwordSet(false);
    toCore.flow(true);
    toCore.drained();
    toCore.closed();
    const e = toEdge!;
    e.post('{"type":"pong"}');
    e.hold(9);
    e.fill(9, '{"type":"ack"}');
    e.goodbye("logged out");
    e.end({ code: "session_revoked", message: "ended" });
    e.closeWith({ code: "flood", message: "too much" });
    e.changePassword(3);
    e.passwordRecorded(false);
    expect(calls).toEqual([
      ["open", facts],
      ["loginFailed", "10.0.0.1", "ticket", 5],
      ["request", dm],
      ["changePassword", 3],
      ["passwordHashed", true],
      ["passwordSet", false],
      ["flow", true],
      ["drained"],
      ["closed"],
      ["post", '{"type":"pong"}'],
      ["hold", 9],
      ["fill", 9, '{"type":"ack"}'],
      ["goodbye", "logged out"],
      ["end", { code: "session_revoked", message: "ended" }],
      ["closeWith", { code: "flood", message: "too much" }],
      ["changePassword", 3],
      ["passwordRecorded", false],
    ]);
    // Each crossed as one JSON text.
    expect(texts.length).toBe(calls.length);
  });
});
