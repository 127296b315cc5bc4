/**
 * Read markers (PROTOCOL.md §7.14): the same contract kept in memory and in
 * securechat.db, and the database's markers outlive the server process.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../../src/store/db.ts";
import { type DeviceMarker, DM_MARKER, type MarkerOp, MemoryMarkers, type ReadMarkers, WriteBehindMarkers } from "../../src/store/markers.ts";

function withStore(fn: (store: Store, dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "sc-markers-"));
  try {
    const store = new Store(dir);
    for (const name of ["carol", "dave"]) store.createAccount({ name, identityKey: new Uint8Array(32).fill(name.length), verifier: "v", createdAt: 0 });
    try {
      fn(store, dir);
    } finally {
      store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const kinds: [string, (fn: (m: ReadMarkers) => void) => void][] = [
  ["memory", (fn) => fn(new MemoryMarkers())],
  ["securechat.db", (fn) => withStore((s) => fn(s.markers))],
  // The server's: in memory, written behind; flushed after each step, and read back from the database alike.
  [
    "written behind",
    (fn) =>
      withStore((s) => {
        const w = new WriteBehindMarkers(s.markers);
        fn(w);
        w.flush();
        for (const user of ["carol", "dave"]) {
          for (const device of ["laptop", "phone", "tablet"]) expect(s.markers.rooms(user, device)).toEqual(w.rooms(user, device));
        }
      }),
  ],
];

describe.each(kinds)("read markers (%s)", (_name, run) => {
  test("a marker moves forward only; best is the user's most advanced device; each user's are its own", () => {
    run((m) => {
      m.advance("carol", "laptop", "general", 5, 100, 10);
      m.advance("carol", "laptop", "general", 3, 200, 10);
      expect(m.get("carol", "laptop", "general")).toEqual({ room: "general", seq: 5, at: 100 });
      m.advance("carol", "phone", "general", 9, 300, 10);
      expect(m.best("carol", "general")).toEqual({ room: "general", seq: 9, at: 300 });
      expect(m.get("carol", "laptop", "general")?.seq).toBe(5);
      expect(m.get("dave", "laptop", "general")).toBeNull();
      expect(m.best("dave", "general")).toBeNull();
    });
  });

  test("rooms lists this device's marker where it has one, else the most advanced other; never the DM marker", () => {
    run((m) => {
      m.advance("carol", "laptop", "general", 5, 100, 10);
      m.advance("carol", "phone", "general", 9, 300, 10);
      m.advance("carol", "phone", "ops", 2, 310, 10);
      m.advance("carol", "tablet", "ops", 4, 320, 10);
      m.advance("carol", "laptop", DM_MARKER, 7, 330, 10);
      expect(m.rooms("carol", "laptop")).toEqual([
        { room: "general", seq: 5, at: 100 },
        { room: "ops", seq: 4, at: 320 },
      ]);
      expect(m.rooms("carol", "phone")).toEqual([
        { room: "general", seq: 9, at: 300 },
        { room: "ops", seq: 2, at: 310 },
      ]);
      expect(m.rooms("dave", "laptop")).toEqual([]);
    });
  });

  test("forget drops every device's marker of the room; lower brings markers back to a seq", () => {
    run((m) => {
      m.advance("carol", "laptop", "general", 5, 100, 10);
      m.advance("carol", "phone", "general", 9, 300, 10);
      m.advance("dave", "laptop", "general", 9, 300, 10);
      m.lower("carol", "general", 6);
      expect([m.get("carol", "laptop", "general")?.seq, m.get("carol", "phone", "general")?.seq]).toEqual([5, 6]);
      m.forget("carol", "general");
      expect(m.best("carol", "general")).toBeNull();
      expect(m.best("dave", "general")?.seq).toBe(9);
    });
  });

  test("past the cap a new marker forgets the user's least recently set one", () => {
    run((m) => {
      m.advance("carol", "laptop", "a", 1, 100, 3);
      m.advance("carol", "laptop", "b", 1, 200, 3);
      m.advance("carol", "phone", "c", 1, 300, 3);
      m.advance("carol", "laptop", "a", 2, 400, 3); // moving "a" makes "b" the least recently set
      m.advance("dave", "laptop", "x", 1, 50, 3);
      m.advance("carol", "laptop", "d", 1, 500, 3);
      expect(m.rooms("carol", "laptop").map((x) => x.room)).toEqual(["a", "c", "d"]);
      expect(m.best("dave", "x")?.seq).toBe(1);
    });
  });
});

test("markers in securechat.db survive the server closing its database", () => {
  withStore((store, dir) => {
    store.markers.advance("carol", "laptop", "general", 12, 100, 10);
    store.close();
    const again = new Store(dir);
    try {
      expect(again.markers.get("carol", "laptop", "general")).toEqual({ room: "general", seq: 12, at: 100 });
    } finally {
      again.close();
    }
    // withStore closes its own handle again: harmless
  });
});

test("a batch of markers in securechat.db is one transaction: all of it is written, or none", () => {
  withStore((store) => {
    expect(() =>
      store.markers.batch(() => {
        store.markers.advance("carol", "laptop", "general", 3, 100, 10);
        store.markers.advance("carol", "laptop", "ops", 4, 100, 10);
        throw new Error("test: the server fails half-way");
      }),
    ).toThrow("half-way");
    expect(store.markers.rooms("carol", "laptop")).toEqual([]);
    store.markers.batch(() => {
      store.markers.advance("carol", "laptop", "general", 3, 100, 10);
      store.markers.advance("carol", "laptop", "ops", 4, 100, 10);
    });
    expect(store.markers.rooms("carol", "laptop").map((m) => m.seq)).toEqual([3, 4]);
  });
});

describe("the server's markers, written behind (WriteBehindMarkers)", () => {
  test("a change is in memory at once and in securechat.db at the next flush, all pending ones in one transaction; a marker that does not move writes nothing", () => {
    withStore((store) => {
      const w = new WriteBehindMarkers(store.markers);
      w.advance("carol", "laptop", "general", 3, 100, 10);
      w.advance("carol", "laptop", DM_MARKER, 7, 100, 10);
      expect(w.get("carol", "laptop", "general")?.seq).toBe(3);
      expect(store.markers.get("carol", "laptop", "general")).toBeNull();
      expect(w.pending).toBe(2);
      w.flush();
      expect(w.pending).toBe(0);
      expect(store.markers.get("carol", "laptop", "general")?.seq).toBe(3);
      expect(store.markers.get("carol", "laptop", DM_MARKER)?.seq).toBe(7);
      w.advance("carol", "laptop", "general", 2, 200, 10);
      expect(w.pending).toBe(0);
    });
  });

  test("a user's markers are loaded from the database at first use and leave memory when released, once written", () => {
    withStore((store) => {
      store.markers.advance("carol", "laptop", "general", 5, 100, 10);
      const w = new WriteBehindMarkers(store.markers);
      expect(w.best("carol", "general")?.seq).toBe(5);
      w.advance("carol", "phone", "general", 9, 200, 10);
      w.release("carol");
      // Released with a change pending: still answered from memory until written.
      expect(w.best("carol", "general")?.seq).toBe(9);
      w.release("carol");
      w.flush();
      // Gone from memory; read back from the database.
      store.markers.forget("carol", "general");
      expect(w.best("carol", "general")).toBeNull();
    });
  });

  test("over a store that answers later (PostgreSQL), a ban forgets the room for a user who is offline, markers not loaded: written at the next flush, nothing read", async () => {
    const stored: DeviceMarker[] = [{ device: "laptop", room: "ops", seq: 4, at: 100 }, { device: "laptop", room: "general", seq: 2, at: 100 }];
    const written: MarkerOp[] = [];
    const w = new WriteBehindMarkers({ all: async () => stored, write: async (ops) => void written.push(...ops) });
    // carol is offline: her markers are not in memory, and a read of them would be an error.
    expect(() => w.best("carol", "ops")).toThrow("read before load() settled");
    w.forget("carol", "ops");
    // She logs in before the flush: her markers, loaded from rows that still hold ops, do not.
    await w.load("carol");
    expect(w.best("carol", "ops")).toBeNull();
    expect(w.best("carol", "general")?.seq).toBe(2);
    await w.flush();
    expect(written).toEqual([{ op: "forget", user: "carol", room: "ops" }]);
  });
});
