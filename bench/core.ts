/**
 * The chat core alone (src/server/chat.ts with a MemoryJournal, no sockets,
 * no encryption): deliveries per CPU-second when one member of a room of N
 * says messages and every other member is posted each. This is the work a
 * cluster's one chat core does per delivery (docs/CLUSTER.md); the rest of a
 * delivery — encrypting the record and writing it to the socket — is done on
 * whichever node holds the connection. `bun run bench` measures the whole.
 *
 *   bun run bench/core.ts [--n 100] [--messages 20000]
 */
import { Chat, DEFAULT_CHAT, type Member } from "../src/server/chat.ts";
import { MemoryJournal } from "../src/store/journal.ts";

function arg(name: string, fallback: number): number {
  const i = Bun.argv.indexOf(name);
  return i > 0 ? Number(Bun.argv[i + 1]) : fallback;
}

class Counter implements Member {
  posted = 0;
  bytes = 0;
  readonly congested = false;
  readonly session: string;
  constructor(readonly user: string) {
    this.session = Buffer.from(user.padEnd(16, ".").slice(0, 16)).toString("base64");
  }
  post(json: string): void {
    this.posted++;
    this.bytes += json.length;
  }
  postWhen(ready: Promise<void>, ok: () => string): void {
    void ready.then(() => this.post(ok()));
  }
}

function run(n: number, messages: number): { deliveries: number; cpuS: number; bytes: number } {
  const fast = { rate: 1e9, burst: 1e9 };
  const chat = new Chat({ ...DEFAULT_CHAT, flood: fast, requests: fast, maxHeld: 1e9 }, new MemoryJournal(50));
  const members = Array.from({ length: n }, (_, i) => new Counter(`user${i}`));
  for (const m of members) {
    chat.connect(m);
    chat.handle(m, { type: "join", room: "#bench" });
  }
  for (const m of members) m.posted = m.bytes = 0;
  const text = "x".repeat(100);
  const t0 = process.cpuUsage();
  for (let i = 0; i < messages; i++) chat.handle(members[0]!, { type: "say", id: i + 1, room: "#bench", text });
  const t1 = process.cpuUsage(t0);
  let deliveries = 0;
  let bytes = 0;
  for (const m of members.slice(1)) {
    deliveries += m.posted;
    bytes += m.bytes;
  }
  return { deliveries, cpuS: (t1.user + t1.system) / 1e6, bytes };
}

const n = arg("--n", 100);
const messages = arg("--messages", 20_000);
run(n, Math.min(messages, 2000)); // warm-up
const rows = [1, 2, 3].map(() => run(n, messages));
rows.sort((a, b) => a.deliveries / a.cpuS - b.deliveries / b.cpuS);
const mid = rows[1]!;
console.log(`chat core alone, N=${n}, ${messages} messages of 100 bytes, median of 3:`);
console.log(`  ${Math.round(mid.deliveries / mid.cpuS).toLocaleString("en-US")} deliveries per CPU-second (${mid.deliveries.toLocaleString("en-US")} in ${mid.cpuS.toFixed(3)} s), ${Math.round(mid.bytes / mid.deliveries)} bytes of JSON each`);
