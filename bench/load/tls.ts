/**
 * The "Bun TLS relay" baseline: bench/load/bare.ts's relay (same framing,
 * same socket code, same coalescing) behind Bun.listen({tls}) — what a user
 * could assemble instead of securechat. The certificate is a fresh
 * self-signed P-256 one made with openssl into --dir. Prints
 * {"port": P, "ca": CERT_FILE}; SIGTERM stops it.
 *
 *   bun run bench/load/tls.ts --dir DIR
 *
 * `makeSelfSignedCert` is shared with anything else that needs a loopback
 * certificate (the generators pin it with `--ca`).
 */
import { join } from "node:path";
import { serveRelay } from "./bare.ts";
import { parseArgs, strArg } from "./common.ts";

/** Where openssl is, or null (the TLS baselines are then skipped). */
export function opensslPath(): string | null {
  return Bun.which("openssl") ?? Bun.which("openssl", { PATH: "/usr/bin:/usr/local/bin:/bin" });
}

/**
 * A self-signed ECDSA P-256 certificate for 127.0.0.1 / localhost, valid
 * one day, written to DIR/cert.pem and DIR/key.pem. Bounded (10 s).
 */
export function makeSelfSignedCert(dir: string): { certPath: string; keyPath: string } {
  const openssl = opensslPath();
  if (!openssl) throw new Error("bench/load/tls: openssl not found");
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  const r = Bun.spawnSync(
    [
      openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyPath, "-out", certPath, "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe", timeout: 10_000 },
  );
  if (r.exitCode !== 0) throw new Error(`bench/load/tls: openssl req failed (${r.exitCode ?? r.signalCode}): ${r.stderr.toString().trim()}`);
  return { certPath, keyPath };
}

if (import.meta.main) {
  const args = parseArgs(Bun.argv.slice(2));
  const { certPath, keyPath } = makeSelfSignedCert(strArg(args, "dir"));
  serveRelay({ tls: { cert: await Bun.file(certPath).text(), key: await Bun.file(keyPath).text() } }, { ca: certPath });
}
