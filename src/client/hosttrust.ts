/**
 * The client's trust-on-first-use policy for host keys (docs/DESIGN.md §5),
 * over the pins in src/client/known_hosts.ts: a known key passes; an
 * unknown one is pinned after a person says yes, or with --accept-new-host;
 * a changed one is exit 4, never a prompt.
 */
import { SecureChatError } from "../errors.ts";
import { fingerprint } from "../fingerprint.ts";
import { addKnownHost, checkHost } from "./known_hosts.ts";
import { promptYesNo, stdinIsTerminal } from "./prompt.ts";

/** The address a key is pinned for (`HOST:PORT`). */
interface Pinned {
  id: string;
}

export interface HostTrust {
  /** `--accept-new-host`: pin an unknown server's key without asking. */
  acceptNew: boolean;
}

/**
 * Enforces the pin (docs/DESIGN.md §5): unknown → ask or --accept-new-host; changed →
 * exit 4, never a prompt. Returns true if a person was asked (which may have
 * taken longer than the server's handshake deadline).
 */
export async function trustHost(addr: Pinned, hostKey: Uint8Array, trust: HostTrust): Promise<boolean> {
  const check = checkHost(addr.id, hostKey);
  if (check.status === "known") return false;
  const fp = fingerprint(hostKey);
  if (check.status === "changed") {
    throw new SecureChatError("host_key_changed", `the host key of ${addr.id} has changed (now ${fp}); someone may be intercepting this connection`, {
      detail: { line: check.line, path: check.path },
    });
  }
  if (!trust.acceptNew) {
    if (!stdinIsTerminal()) {
      throw new SecureChatError("host_key_unknown", `${addr.id} is not a known host (its key is ${fp})`);
    }
    process.stderr.write(`The authenticity of ${addr.id} can't be established.\nIts host key fingerprint is ${fp}.\n`);
    if (!(await promptYesNo("Do you trust this key and want to continue?"))) {
      throw new SecureChatError("host_key_rejected", `host key of ${addr.id} not accepted`);
    }
  }
  addKnownHost(addr.id, hostKey);
  process.stderr.write(`Added ${addr.id} (${fp}) to the known hosts.\n`);
  return !trust.acceptNew;
}
