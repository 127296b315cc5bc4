/** Parsing of flag values; a bad value is a usage error (exit 2) naming the flag. */
import { ROOM_NAME_RE, USER_NAME_RE } from "../protocol/limits.ts";
import { CliError, EXIT } from "./exit.ts";

export function parseInteger(flag: string, value: string, min: number, max: number): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new CliError(EXIT.USAGE, `${flag} must be a whole number from ${min} to ${max}, not "${value}"`);
  }
  return n;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Longest timer a JavaScript runtime can set (2^31 − 1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** "90", "90s", "15m", "8h", "1d" → milliseconds (a bare number is seconds), at most `maxMs`. */
export function parseDuration(flag: string, value: string, maxMs: number = MAX_TIMER_MS): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
  const ms = m ? Number(m[1]) * UNITS[m[2] ?? "s"]! : NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0 || ms > maxMs) {
    throw new CliError(EXIT.USAGE, `${flag} must be a duration like 30s, 15m, 8h or 1d, at most ${Math.floor(maxMs / 86_400_000)}d, not "${value}"`);
  }
  return ms;
}

/** A room name (chat --room, the transcript filters' --room). */
export function parseRoomName(flag: string, value: string): string {
  if (!ROOM_NAME_RE.test(value)) throw new CliError(EXIT.USAGE, `${flag}: "${value}" is not a room name`, ["use 1-32 characters: a-z, 0-9, _ or -, starting with a letter or digit"]);
  return value;
}

/** A user name given to select entries (the transcript commands' --user). */
export function parseUserName(flag: string, value: string): string {
  if (!USER_NAME_RE.test(value)) throw new CliError(EXIT.USAGE, `${flag}: "${value}" is not a user name`, ["use 2-32 characters: a lowercase letter, then a-z, 0-9, _ or -"]);
  return value;
}

/** HOST:PORT to listen on ([V6]:PORT for IPv6); port 0 means any free port. */
export function parseListen(flag: string, value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new CliError(EXIT.USAGE, `${flag} must be HOST:PORT, such as 127.0.0.1:7448 or [::1]:7448, not "${value}"`, ["port 0 picks any free port; a host other than loopback serves other machines"]);
  return { host: m[1] ?? m[2]!, port };
}

/**
 * `--witness VKEY` (repeatable; the vkey, or a file holding it) and
 * `--witness-quorum K` (default: all of them): the witnesses a client or an
 * auditor requires (TRANSCRIPT.md §4.5); undefined without --witness.
 */
export async function witnessPolicy(vkeys: string[], quorum: string | undefined): Promise<{ witnesses: import("../transcript/note.ts").NoteVerifier[]; quorum: number } | undefined> {
  if (vkeys.length === 0) {
    if (quorum !== undefined) throw new CliError(EXIT.USAGE, "--witness-quorum needs --witness VKEY", ["give each witness's vkey with its own --witness"]);
    return undefined;
  }
  const [{ parseCosignerKey }, { existsSync, readFileSync }] = await Promise.all([import("../transcript/cosignature.ts"), import("node:fs")]);
  const witnesses = vkeys.map((v) => {
    try {
      return parseCosignerKey(v.includes("+") || !existsSync(v) ? v : readFileSync(v, "utf8").split("\n")[0]!);
    } catch (e) {
      throw new CliError(EXIT.USAGE, `--witness: ${(e as Error).message.replace(/^signed note: /, "")}`, ["pass the vkey=… value a witness prints when it starts (transcript witness)"]);
    }
  });
  return { witnesses, quorum: quorum === undefined ? witnesses.length : parseInteger("--witness-quorum", quorum, 1, witnesses.length) };
}
