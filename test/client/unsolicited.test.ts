/**
 * A hostile server sends `room` events for rooms the client never asked to
 * join. `room` is only ever the answer to this connection's `join`
 * (PROTOCOL.md §7.3), so the client must not take them as rooms it is in:
 * otherwise the server moves the user's next line to a room of its choice,
 * and grows the client's room list (and the status row redrawn for every
 * event, all of its rooms each time) without bound.
 */
import { afterEach, expect, test } from "bun:test";
import { ChatClient } from "../../src/client/chat.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { Collector } from "../server/chat-helpers.ts";
import { HostileServer, polite } from "./hostile-server.ts";

const servers: HostileServer[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop();
});

test("room events the client did not ask for neither add rooms nor change where lines go", async () => {
  const s = HostileServer.start({
    message: (c, m) => {
      polite(c, m);
      if (m.type === "join") {
        for (let i = 0; i < 200; i++) c.send({ type: "room", room: `unasked${i}`, users: [c.user], seq: 0 });
        c.send({ type: "room", room: "public", users: [c.user], seq: 0 });
        c.send({ type: "notice", code: "marker", text: "done" });
      }
    },
  });
  servers.push(s);
  s.install("alice");
  const sink = new Collector();
  const client = new ChatClient(
    { addr: parseServerAddress(s.address), user: "alice", trust: { acceptNew: false }, room: "lobby", password: () => Promise.reject(new Error("test: not used")), reconnect: false },
    sink,
  );
  try {
    await client.start();
    await sink.until("marker", () => sink.of("notice").some((n) => n.code === "marker"), 10_000);
    expect(client.rooms).toEqual(["lobby"]);
    expect(client.room).toBe("lobby");
    await client.say("for the lobby only");
    const say = await s.conns[0]!.until("say", (m) => m.type === "say");
    expect(say).toMatchObject({ room: "lobby" });
  } finally {
    await client.quit();
  }
}, 20_000);
