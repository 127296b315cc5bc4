/**
 * Host key pinning, trust on first use (docs/DESIGN.md §5): `$SECURECHAT_HOME/known_hosts`
 * holds one line per server, `HOST:PORT ed25519 BASE64KEY`; `#` starts a
 * comment. A changed key is never a prompt: it is exit 4 with the line to
 * remove, as OpenSSH does.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fromBase64, toBase64 } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { clientHome, writePrivateFile } from "../paths.ts";

export interface KnownHost {
  address: string;
  key: Uint8Array;
  line: number;
}

export function knownHostsPath(): string {
  return join(clientHome(), "known_hosts");
}

function read(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

export function findKnownHost(address: string, path = knownHostsPath()): KnownHost | null {
  const lines = read(path).split("\n");
  for (let i = 0; i < lines.length; i++) {
    const [addr, kind, key] = lines[i]!.trim().split(/\s+/);
    if (addr !== address || kind !== "ed25519" || key === undefined) continue;
    try {
      return { address, key: fromBase64(key, 32), line: i + 1 };
    } catch {
      continue;
    }
  }
  return null;
}

export type HostCheck = { status: "known" } | { status: "new" } | { status: "changed"; line: number; path: string };

export function checkHost(address: string, key: Uint8Array, path = knownHostsPath()): HostCheck {
  const known = findKnownHost(address, path);
  if (!known) return { status: "new" };
  if (constantTimeEqual(known.key, key)) return { status: "known" };
  return { status: "changed", line: known.line, path };
}

export function addKnownHost(address: string, key: Uint8Array, path = knownHostsPath()): void {
  const before = read(path);
  const sep = before === "" || before.endsWith("\n") ? "" : "\n";
  writePrivateFile(path, `${before}${sep}${address} ed25519 ${toBase64(key)}\n`);
}
