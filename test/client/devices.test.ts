/**
 * `securechat device add` and `device approve` on the client (PROTOCOL.md
 * §7.11), two machines (two client homes) against an in-process server: the
 * code the new machine shows is the one the approving machine must be
 * given, computed there from the key itself, so another waiting key (say,
 * an attacker's who knows the password) is never approved in its place; the
 * new key is sealed on its own machine and goes when its enrollment is
 * refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { login, register } from "../../src/client/account.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { addDevice, approveDevice, listDevices } from "../../src/client/devices.ts";
import { identityPath, loadIdentity } from "../../src/client/keystore.ts";
import { type TestServer, freshPath, refusedCode, restoreHome, startServer } from "../server/helpers.ts";

const PW = "devices client test passphrase";
let t: TestServer;

beforeAll(async () => {
  t = await startServer();
});
afterAll(async () => {
  await t.server.stop(100);
  restoreHome();
});

/** A machine: its own client home, made the process's while `f` runs (the calls here run one at a time). */
function machine() {
  const home = freshPath("devices-home");
  const run = <T>(f: () => Promise<T>): Promise<T> => {
    process.env.SECURECHAT_HOME = home;
    return f();
  };
  return Object.assign(run, { home });
}

/**
 * `securechat device add` on a machine of its own (a process with its own
 * client home), the password on stdin: its code once it prints it, and its end.
 */
function deviceAdd(home: string, user: string, name: string, password: string) {
  const proc = Bun.spawn(["bun", "run", join(import.meta.dir, "..", "..", "src", "main.ts"), "device", "add", "-u", user, "--name", name, "-s", t.address, "--password-stdin", "--accept-new-host"], {
    env: { ...process.env, SECURECHAT_HOME: home },
    stdin: new Blob([`${password}\n`]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const code = (async () => {
    let text = "";
    for await (const chunk of proc.stdout) {
      text += new TextDecoder().decode(chunk);
      if (text.includes("\n")) return text.split("\n")[0]!;
    }
    return text;
  })();
  return { proc, code };
}

const opts = (user: string) => ({ addr: parseServerAddress(t.address), user, trust: { acceptNew: true } });

describe("device add, then device approve CODE on a machine already set up", () => {
  test("the approving machine finds the key by its code among others waiting, approves only it; the new machine ends logged in", async () => {
    const a = machine();
    const b = machine();
    const intruder = machine();
    const o = opts("alice");
    await a(() => register(o, PW));

    // Someone with the password asks to enroll a key of their own first.
    const intruding = deviceAdd(intruder.home, "alice", "not alice", PW);
    const intruderCode = await intruding.code;
    const adding = deviceAdd(b.home, "alice", "laptop b", PW);
    const shown = await adding.code;
    expect(shown).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
    expect(shown).not.toBe(intruderCode);

    const seen: string[] = [];
    // Typed in lower case without dashes: the same code.
    const added = await a(() =>
      approveDevice(o, PW, shown.toLowerCase().replaceAll("-", ""), async (p) => {
        seen.push(p.name, p.code);
        return true;
      }),
    );
    expect(seen).toEqual(["laptop b", shown]);
    expect(await adding.proc.exited).toBe(0);
    expect(await new Response(adding.proc.stderr).text()).toContain(`this machine is now device ${added.id} of alice`);

    // B's key is sealed on B under the password, its ticket is there; the intruder's key still only waits.
    const list = await b(() => listDevices(o));
    expect(list.devices.map((d) => [d.name, d.current === true])).toEqual([
      ["", false],
      ["laptop b", true],
    ]);
    expect(list.pending.map((p) => p.name)).toEqual(["not alice"]);
    expect(await b(() => loadIdentity(o.addr.id, "alice", PW))).toBeDefined();
    expect((await b(() => login(o, PW))).user).toBe("alice");
    intruding.proc.kill();
    await intruding.proc.exited;
  }, 30_000);

  test("a code no waiting enrollment has is refused and nothing is approved; declining at the prompt approves nothing", async () => {
    const a = machine();
    const b = machine();
    const o = opts("bob");
    await a(() => register(o, PW));
    const adding = deviceAdd(b.home, "bob", "laptop", PW);
    const shown = await adding.code;
    expect(await a(() => refusedCode(approveDevice(o, PW, "0000-0000-0000", async () => true)))).toBe("no_enrollment");
    expect(await a(() => refusedCode(approveDevice(o, PW, shown, async () => false)))).toBe("approval_declined");
    const list = await a(() => listDevices(o));
    expect(list.devices.length).toBe(1);
    expect(list.pending.length).toBe(1);
    adding.proc.kill();
    await adding.proc.exited;
  }, 30_000);

  test("a refused enrollment (wrong password) leaves no key file; a machine that has a key already is refused before anything is sent", async () => {
    const a = machine();
    const b = machine();
    const o = opts("carol");
    await a(() => register(o, PW));
    expect(await b(() => refusedCode(addDevice(o, `${PW}!`, "laptop", () => {})))).toBe("auth_failed");
    expect(await b(async () => existsSync(identityPath(o.addr.id, "carol")))).toBe(false);
    expect(await a(() => refusedCode(addDevice(o, PW, "again", () => {})))).toBe("identity_exists");
  }, 30_000);
});
