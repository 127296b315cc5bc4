/**
 * `log_proof` (PROTOCOL.md §7.13) is bounded like every request: each costs
 * a token from the user's request bucket and waits its turn; past the held
 * requests a flood of them is refused with `flood`, one notice each, and the
 * server goes on. Over the raw protocol against an in-process server.
 */
import { describe, expect, test } from "bun:test";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { passwordLogin, rawSession, registerRaw, serversStoppedAfterAll, untilMessage } from "./helpers.ts";

const NET = 20_000;
const PW = "log state test passphrase";
const server = serversStoppedAfterAll();

describe("log_proof costs what a request costs", () => {
  test("past the request bucket it is held behind slow_down and answered in order; past the held ones, flood", async () => {
    const t = await server({ chat: { ...DEFAULT_CHAT, requests: { rate: 5, burst: 1 }, maxHeld: 3 } });
    const u = await registerRaw(t.port, "lena", PW);
    const s = await rawSession(t.port);
    expect((await passwordLogin(s, "lena", PW, u.identity)).type).toBe("welcome");
    s.send({ type: "ping" });
    for (let i = 0; i < 8; i++) s.send({ type: "log_proof", from: 2 ** 40, leaves: Array.from({ length: 16 }, (_, j) => 2 ** 40 + j) });
    // Every one of the 8 gets exactly one answer: a no_log notice (the memory journal has no tree), or flood.
    let answered = 0;
    const got = await untilMessage(s, (m) => m.type === "notice" && (m.code === "no_log" || m.code === "flood") && ++answered === 8);
    const codes = got.seen.map((m) => (m.type === "notice" ? m.code : m.type));
    expect(codes.slice(0, 2)).toEqual(["pong", "slow_down"]);
    expect(codes.filter((c) => c === "flood").length).toBeGreaterThanOrEqual(3);
    expect(codes.filter((c) => c === "no_log").length).toBeLessThanOrEqual(5);
    // The connection is still served.
    s.send({ type: "ping" });
    await untilMessage(s, (m) => m.type === "pong");
    s.close();
  }, NET);
});
