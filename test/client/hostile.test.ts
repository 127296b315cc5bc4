/**
 * The chat client against a hostile server (./hostile-server.ts: the real
 * handshake and records, then whatever the test says):
 *
 * - reconnecting: a refusal that is not about authentication is reported,
 *   and the client goes on trying.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ChatClient } from "../../src/client/chat.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { Collector } from "../server/chat-helpers.ts";
import { type HostileOptions, HostileServer, polite } from "./hostile-server.ts";

const NET = 20_000;
const servers: HostileServer[] = [];
afterEach(() => {
  for (const s of servers) expect(s.errors).toEqual([]);
  for (const s of servers.splice(0)) s.stop();
});

function serve(opts: HostileOptions): HostileServer {
  const s = HostileServer.start(opts);
  servers.push(s);
  s.install("alice");
  return s;
}

describe("reconnecting", () => {
  test("a refusal that is not about authentication is reported, and the client goes on trying", async () => {
    const s = serve({
      refuse: (n) => (n === 2 ? "server_busy" : null),
      session: (c, n) =>
        (c.onMessage = (m) => {
          polite(c, m);
          if (m.type === "join" && n === 1) c.close();
        }),
    });
    const sink = new Collector();
    const client = new ChatClient(
      { addr: parseServerAddress(s.address), user: "alice", trust: { acceptNew: false }, room: "lobby", password: () => Promise.reject(new Error("test: not used")), reconnect: true },
      sink,
    );
    try {
      await client.start();
      await sink.until("connected twice", () => sink.of("connected").length === 2, 15_000);
      const locals = sink.of("local").map((e) => e.text);
      expect(locals).toEqual(["reconnecting failed (attempt 1): server refused: server_busy: hostile server: go away"]);
      expect(sink.events.map((e) => e.type).filter((t) => t === "disconnected" || t === "reconnecting" || t === "local" || t === "connected")).toEqual([
        "connected",
        "disconnected",
        "reconnecting",
        "local",
        "reconnecting",
        "connected",
      ]);
      expect(client.failure).toBeNull();
    } finally {
      await client.quit();
    }
  }, NET);
});
