/**
 * The chat client's memory while a hostile server floods it and nobody
 * reads its stdout: `securechat chat --json` (stdin an idle pipe, stdout a
 * fifo whose reader never reads) against test/client/hostile-server.ts,
 * which after the join sends records full of 4 KiB messages as fast as the
 * client's socket takes them. Samples the client's VmRSS every 50 ms and
 * prints the peak, and how much the server got to send.
 *
 *   bun run bench/client-flood.ts [--seconds 10] [--repo DIR]
 *
 * --repo runs the client of another checkout (e.g. the main branch, to
 * compare); the client is killed at the end, or once its RSS passes 4 GiB.
 */
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const seconds = Number(opt("--seconds", "10"));
const repo = resolve(opt("--repo", join(import.meta.dir, "..")));
const MiB = 1024 * 1024;
const LIMIT = 4096 * MiB;

const work = mkdtempSync(join(tmpdir(), "securechat-client-flood-"));
process.env.SECURECHAT_HOME = join(work, "home");
// Imported only now: the module tree reads SECURECHAT_HOME when it installs the ticket.
const { HostileServer, MessageFlood, polite } = await import("../test/client/hostile-server.ts");

const flood = new MessageFlood();
let stop = false;
const server = HostileServer.start({
  message: (c, m) => {
    polite(c, m);
    if (m.type === "join") void c.flood(flood.next, () => stop);
  },
});
server.install("alice");

const fifo = join(work, "stdout.fifo");
Bun.spawnSync(["mkfifo", fifo]);
const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK); // held open, never read
const writer = openSync(fifo, constants.O_WRONLY);
const client = Bun.spawn([process.execPath, "src/main.ts", "chat", "--user", "alice", "--server", server.address, "--room", "lobby", "--json"], {
  cwd: repo,
  env: { ...process.env },
  stdin: "pipe",
  stdout: writer,
  stderr: "pipe",
});
closeSync(writer);

const rss = (pid: number): number => {
  try {
    return Number(/VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
  } catch {
    return 0;
  }
};
let peak = 0;
const t0 = performance.now();
while (performance.now() - t0 < seconds * 1000 && client.exitCode === null) {
  peak = Math.max(peak, rss(client.pid));
  if (peak > LIMIT) break;
  await Bun.sleep(50);
}
const elapsed = (performance.now() - t0) / 1000;
const exited = client.exitCode;
const sent = server.conns[0]?.written ?? 0;
stop = true;
client.kill("SIGKILL");
await client.exited;
const stderr = await new Response(client.stderr).text();
server.stop();
closeSync(reader);
rmSync(work, { recursive: true, force: true });

console.log(`client: ${repo}`);
console.log(`after ${elapsed.toFixed(1)} s: client peak RSS ${(peak / MiB).toFixed(1)} MiB${peak > LIMIT ? " (stopped at the 4 GiB limit)" : ""}; the server got ${(sent / MiB).toFixed(1)} MiB (${flood.seq} messages made) into the socket; client ${exited === null ? "still running" : `exited ${exited}`}`);
if (stderr.trim() !== "") console.log(`client stderr: ${stderr.trim().split("\n").slice(0, 5).join(" | ")}`);
process.exit(0);
