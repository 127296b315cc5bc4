/**
 * Session tickets on the client (src/client/tickets.ts): a private file per
 * account; loadTicket gives the ticket only if it is well-formed, belongs to
 * this user and server, and has not expired; anything else is null.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { deleteTicket, loadTicket, saveTicket, ticketPath, type StoredTicket } from "../../src/client/tickets.ts";
import { ed25519Generate, randomBytes } from "../../src/crypto/index.ts";

let n = 0;
/** A fresh server id per test, so tests never see each other's files. */
const server = () => `tickets-${++n}.test:7447`;
const USER = "alice";
const NOW = 1_800_000_000_000;

function ticket(expiresAt = NOW + 3_600_000): StoredTicket {
  return { ticket: randomBytes(32), expiresAt, key: ed25519Generate() };
}

/** Saves a valid ticket, then rewrites the file's JSON with `mutate` applied. */
function tampered(srv: string, mutate: (f: Record<string, any>) => void): void {
  saveTicket(srv, USER, ticket());
  const path = ticketPath(srv, USER);
  const f = JSON.parse(readFileSync(path, "utf8"));
  mutate(f);
  writeFileSync(path, JSON.stringify(f));
}

describe("tickets", () => {
  test("the file lives next to the identity key", () => {
    expect(ticketPath("h:1", USER)).toBe(join(process.env.SECURECHAT_HOME!, "accounts", "h:1", `${USER}.ticket`));
  });

  test("save/load round trip", () => {
    const srv = server();
    const t = ticket();
    saveTicket(srv, USER, t);
    const got = loadTicket(srv, USER, NOW);
    expect(got).not.toBeNull();
    expect(got!.ticket).toEqual(t.ticket);
    expect(got!.expiresAt).toBe(t.expiresAt);
    expect(got!.key.secretKey).toEqual(t.key.secretKey);
    expect(got!.key.publicKey).toEqual(t.key.publicKey);
  });

  test("the file is private and written atomically", () => {
    const srv = server();
    saveTicket(srv, USER, ticket());
    saveTicket(srv, USER, ticket()); // replace
    const path = ticketPath(srv, USER);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(path)).mode & 0o777).toBe(0o700);
    expect(readdirSync(dirname(path))).toEqual([`${USER}.ticket`]);
  });

  test("saving again replaces the ticket", () => {
    const srv = server();
    saveTicket(srv, USER, ticket());
    const second = ticket(NOW + 10);
    saveTicket(srv, USER, second);
    expect(loadTicket(srv, USER, NOW)?.ticket).toEqual(second.ticket);
  });

  test("expiry: valid until the millisecond before expires_at", () => {
    const srv = server();
    saveTicket(srv, USER, ticket(NOW + 1000));
    expect(loadTicket(srv, USER, NOW)).not.toBeNull();
    expect(loadTicket(srv, USER, NOW + 999)).not.toBeNull();
    expect(loadTicket(srv, USER, NOW + 1000)).toBeNull();
    expect(loadTicket(srv, USER, NOW + 10_000)).toBeNull();
  });

  test("now defaults to the clock", () => {
    const srv = server();
    saveTicket(srv, USER, ticket(Date.now() - 1));
    expect(loadTicket(srv, USER)).toBeNull();
    saveTicket(srv, USER, ticket(Date.now() + 60_000));
    expect(loadTicket(srv, USER)).not.toBeNull();
  });

  test("missing: null", () => {
    expect(loadTicket(server(), USER, NOW)).toBeNull();
  });

  test("not JSON, or not an object: null", () => {
    for (const text of ["", "{", "null", "[]", "42", '"ticket"', "{}"]) {
      const srv = server();
      saveTicket(srv, USER, ticket());
      writeFileSync(ticketPath(srv, USER), text);
      expect(loadTicket(srv, USER, NOW)).toBeNull();
    }
  });

  test.each<[string, (f: Record<string, any>) => void]>([
    ["version 2", (f) => (f.version = 2)],
    ["another user", (f) => (f.user = "bob")],
    ["another server", (f) => (f.server = "evil.example:7447")],
    ["expires_at missing", (f) => delete f.expires_at],
    ["expires_at a string", (f) => (f.expires_at = String(NOW + 3_600_000))],
    ["ticket missing", (f) => delete f.ticket],
    ["ticket not base64", (f) => (f.ticket = "not base64!")],
    ["ticket 31 bytes", (f) => (f.ticket = toBase64(new Uint8Array(31)))],
    ["ticket 33 bytes", (f) => (f.ticket = toBase64(new Uint8Array(33)))],
    ["ticket_key missing", (f) => delete f.ticket_key],
    ["ticket_key 16 bytes", (f) => (f.ticket_key = toBase64(new Uint8Array(16)))],
    ["ticket_key a number", (f) => (f.ticket_key = 7)],
  ])("malformed (%s): null", (_, mutate) => {
    const srv = server();
    tampered(srv, mutate);
    expect(loadTicket(srv, USER, NOW)).toBeNull();
  });

  test("a ticket file copied to another user's name is not used", () => {
    const srv = server();
    saveTicket(srv, USER, ticket());
    writeFileSync(ticketPath(srv, "bob"), readFileSync(ticketPath(srv, USER)));
    expect(loadTicket(srv, "bob", NOW)).toBeNull();
    expect(loadTicket(srv, USER, NOW)).not.toBeNull();
  });

  test("deleteTicket removes the file and says whether there was one", () => {
    const srv = server();
    saveTicket(srv, USER, ticket());
    saveTicket(srv, "bob", ticket());
    expect(deleteTicket(srv, USER)).toBe(true);
    expect(loadTicket(srv, USER, NOW)).toBeNull();
    expect(deleteTicket(srv, USER)).toBe(false);
    // Other users' tickets are untouched.
    expect(loadTicket(srv, "bob", NOW)).not.toBeNull();
    expect(deleteTicket(server(), USER)).toBe(false);
  });

  test("an expired ticket still exists until deleted", () => {
    const srv = server();
    saveTicket(srv, USER, ticket(NOW - 1));
    expect(loadTicket(srv, USER, NOW)).toBeNull();
    expect(deleteTicket(srv, USER)).toBe(true);
  });
});
