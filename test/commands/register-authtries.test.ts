/**
 * `serve --max-auth-tries 1` (the strictest setting serve accepts): the
 * name check register makes first uses the connection's only try, and the
 * server closes that connection with too_many_failures instead of
 * answering. The name check is a courtesy; it must not make registering
 * impossible: register goes on to the password (here there is no terminal
 * to ask on, so it stops there, exit 2), and the register itself says
 * whether the name was free.
 */
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli as run } from "../cli.ts";
import { type TestServer, startServer } from "../server/helpers.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startServer({ maxAuthTries: 1 });
});
afterAll(async () => {
  await t.server.stop();
});
beforeEach(() => {
  process.env.SECURECHAT_HOME = join(mkdtempSync(join(tmpdir(), "register-authtries-")), "home");
});

test("with --max-auth-tries 1 the name check does not end register: it gets to the password", async () => {
  const r = await run("register", "bob", "--server", t.address, "--accept-new-host");
  expect(r.stderr).not.toContain("failed attempts on this connection");
  expect(r.stderr).toContain("securechat: no terminal to ask for the password\n");
  expect(r.code).toBe(2);
});
