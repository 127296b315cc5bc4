/**
 * `securechat passwd` on the client (PROTOCOL.md §7.8, Appendix A.2): the
 * identity key is re-sealed under the new password, and the order of the
 * two writes never leaves a user whose key file the server's password
 * cannot open — also when the server's answer is lost.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { changePassword, login, register } from "../../src/client/account.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { identityPath, loadIdentity, pendingIdentityPath } from "../../src/client/keystore.ts";
import { Connection } from "../../src/server/edge.ts";
import { type TestServer, refusedCode, startServer } from "../server/helpers.ts";

const OLD = "passwd test old passphrase";
const NEW = "passwd test new passphrase";
let t: TestServer;
const before = process.env.SECURECHAT_HOME;

beforeAll(async () => {
  t = await startServer();
});
afterAll(async () => {
  await t.server.stop(100);
  if (before === undefined) delete process.env.SECURECHAT_HOME;
  else process.env.SECURECHAT_HOME = before;
});

/** A fresh machine with `user` registered under OLD. */
async function fresh(user: string) {
  process.env.SECURECHAT_HOME = join(mkdtempSync(join(tmpdir(), "passwd-test-")), "home");
  const o = { addr: parseServerAddress(t.address), user, trust: { acceptNew: true } };
  await register(o, OLD);
  return { o, key: identityPath(o.addr.id, user), pending: pendingIdentityPath(o.addr.id, user) };
}

async function opens(server: string, user: string, password: string): Promise<boolean> {
  try {
    await loadIdentity(server, user, password);
    return true;
  } catch {
    return false;
  }
}

describe("passwd re-seals the key and replaces the server's verifier", () => {
  test("after passwd the key here opens with the new password only, no USER.key.new is left, and the server takes the new password only", async () => {
    const { o, pending } = await fresh("alice");
    expect(await changePassword(o, OLD, NEW, false)).toEqual({ type: "password_changed", ended: 0 });
    expect(await opens(o.addr.id, "alice", NEW)).toBe(true);
    expect(await opens(o.addr.id, "alice", OLD)).toBe(false);
    expect(existsSync(pending)).toBe(false);
    expect((await login(o, NEW)).user).toBe("alice");
    expect(await refusedCode(login(o, OLD))).toBe("identity_locked");
  }, 30_000);

  test("a new password the server refuses (policy) leaves the key file as it was and no USER.key.new", async () => {
    const { o, pending } = await fresh("bob");
    // The client checks the policy too; the server's own check is what a bypassing client meets.
    const check = spyOn(await import("../../src/password.ts"), "checkPassword").mockImplementationOnce(async () => {});
    const passwordLogins = () => t.events.filter((e) => e.event === "login" && e.fields.user === "bob" && e.fields.method === "password").length;
    try {
      expect(await refusedCode(changePassword(o, OLD, "short", false))).toBe("password_policy");
    } finally {
      check.mockRestore();
    }
    expect(passwordLogins()).toBe(1); // refused by the server, after the login
    expect(await opens(o.addr.id, "bob", OLD)).toBe(true);
    expect(existsSync(pending)).toBe(false);
    expect((await login(o, OLD)).user).toBe("bob");
  }, 30_000);
});

describe("the answer to change_password is lost: nobody is locked out", () => {
  test("the server changed the password: passwd says it is uncertain, both key files stay, and a login with the new password keeps the new one", async () => {
    const { o, key, pending } = await fresh("carol");
    const change = spyOn(Connection.prototype, "passwordChange").mockImplementationOnce(async function (this: Connection, m) {
      t.server.store.setVerifier(this.user, await t.server.accounts.newVerifier(this.user, m.new_password));
      this.framed.close("test: the answer is lost");
    });
    try {
      expect(await refusedCode(changePassword(o, OLD, NEW, false))).toBe("passwd_uncertain");
    } finally {
      change.mockRestore();
    }
    expect(existsSync(key) && existsSync(pending)).toBe(true);
    expect(await refusedCode(login(o, OLD))).toBe("auth_failed");
    expect(existsSync(pending)).toBe(true);
    expect((await login(o, NEW)).user).toBe("carol");
    expect(existsSync(pending)).toBe(false);
    expect(await opens(o.addr.id, "carol", NEW)).toBe(true);
  }, 30_000);

  test("the server did not change it: a login with the old password works and drops the unconfirmed key file", async () => {
    const { o, pending } = await fresh("dave");
    const change = spyOn(Connection.prototype, "passwordChange").mockImplementationOnce(async function (this: Connection) {
      this.framed.close("test: lost before the change");
    });
    try {
      expect(await refusedCode(changePassword(o, OLD, NEW, false))).toBe("passwd_uncertain");
    } finally {
      change.mockRestore();
    }
    expect(existsSync(pending)).toBe(true);
    expect((await login(o, OLD)).user).toBe("dave");
    expect(existsSync(pending)).toBe(false);
    expect(await opens(o.addr.id, "dave", OLD)).toBe(true);
  }, 30_000);
});
