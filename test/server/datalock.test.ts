/**
 * One server per data directory, as an operator meets it: two real `serve`
 * processes on one `--data` (a lock does not conflict with itself inside one
 * process, so these are processes). The second refuses, naming the first's
 * pid, and leaves the transcript as it was; a server killed with SIGKILL
 * leaves nothing that blocks the next start, and the transcript verifies.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { type Proc, REPO, killProc, spawnServer } from "../hardening/helpers.ts";
import { tempDir } from "../transcript/helpers.ts";

const procs: Proc[] = [];
afterAll(async () => {
  for (const p of procs) await killProc(p);
});

function transcriptBytes(data: string): string {
  const dir = join(data, "transcript");
  return readdirSync(dir)
    .sort()
    .map((f) => `${f}\n${readFileSync(join(dir, f), "utf8")}`)
    .join("");
}

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, "src/main.ts", ...argv], { cwd: REPO, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  procs.push(proc);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

describe("one server per data directory", () => {
  test("a second serve on the same --data refuses with the first one's pid; after kill -9 of the first, a new one starts", async () => {
    const data = join(tempDir("datalock"), "data");
    const first = await spawnServer(data, [], procs);
    const before = transcriptBytes(data);

    const second = await cli("serve", "--port", "0", "--data", data, "--json");
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`securechat: ${data} is in use by another securechat server (pid ${first.proc.pid})\nhint: stop that server first (kill ${first.proc.pid}), or pass another --data\n`);
    expect(second.stdout).toBe("");
    expect(transcriptBytes(data)).toBe(before);

    await killProc(first.proc, "SIGKILL");
    const third = await spawnServer(data, [], procs);
    expect(third.lines.some((l) => JSON.parse(l).event === "transcript_unclean_stop")).toBe(true);
    await killProc(third.proc, "SIGTERM");
    expect(third.proc.exitCode).toBe(0);

    const verify = await cli("transcript", "verify", join(data, "transcript"), "--host-key", join(data, "host_key.pub"));
    expect(verify.stdout).toStartWith("PASS");
    expect(verify.code).toBe(0);
  }, 60_000);
});
