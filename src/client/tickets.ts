/**
 * Session tickets on the client (`accounts/HOST:PORT/USER.ticket`, 0600): the
 * ticket the server issued, its expiry, and the Ed25519 ticket key it is
 * bound to. A ticket login signs the handshake with the ticket key, so the
 * identity key can stay sealed under the password (PROTOCOL.md §5.1).
 * The ticket is a short-lived bearer credential: it expires, and `logout`
 * revokes it on the server and deletes this file.
 */
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { fromBase64, toBase64, utf8 } from "../bytes.ts";
import { type Ed25519KeyPair, ed25519Generate, wipe } from "../crypto/index.ts";
import { writePrivateFile } from "../paths.ts";
import { accountDir } from "./keystore.ts";

export interface StoredTicket {
  ticket: Uint8Array;
  expiresAt: number;
  key: Ed25519KeyPair;
}

export function ticketPath(server: string, user: string): string {
  return join(accountDir(server), `${user}.ticket`);
}

/**
 * Writes the ticket file (0600, atomically). The caller keeps its buffers; the
 * encoded bytes written are wiped here (the base64 strings on the way cannot be).
 */
export function saveTicket(server: string, user: string, t: StoredTicket): void {
  const bytes = utf8(
    `${JSON.stringify({ version: 1, user, server, ticket: toBase64(t.ticket), expires_at: t.expiresAt, ticket_key: toBase64(t.key.secretKey) })}\n`,
  );
  try {
    writePrivateFile(ticketPath(server, user), bytes);
  } finally {
    wipe(bytes);
  }
}

/** The stored ticket if present, well-formed and not expired; otherwise null. */
export function loadTicket(server: string, user: string, now = Date.now()): StoredTicket | null {
  const path = ticketPath(server, user);
  if (!existsSync(path)) return null;
  let ticket: Uint8Array | undefined;
  let seed: Uint8Array | undefined;
  try {
    const f = JSON.parse(readFileSync(path, "utf8"));
    if (f.version !== 1 || f.user !== user || f.server !== server || typeof f.expires_at !== "number") return null;
    if (f.expires_at <= now) return null;
    ticket = fromBase64(f.ticket, 32);
    seed = fromBase64(f.ticket_key, 32);
    return { ticket, expiresAt: f.expires_at, key: ed25519Generate(seed) };
  } catch {
    wipe(ticket, seed);
    return null;
  }
}

export function deleteTicket(server: string, user: string): boolean {
  const path = ticketPath(server, user);
  if (!existsSync(path)) return false;
  unlinkSync(path);
  return true;
}
