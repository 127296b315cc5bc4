/**
 * Handshake cost, both sides in-process, against the primitives it is made
 * of (src/crypto: node:crypto's native X25519 and Ed25519 behind raw-key
 * wrappers), against @noble/curves (what src/crypto used before, still the
 * tests' cross-check) and against node:crypto with key objects imported once
 * (the floor: what the wrappers' per-call key import costs), in the same run.
 *
 * A full handshake is 2 X25519 key generations (one ephemeral per side),
 * 2 X25519 shared secrets, 2 Ed25519 signatures (host key, client identity)
 * and 2 verifications; the server's share is one of each. What is left over
 * is SHA-256, HKDF, randomness and allocation.
 */
import { ed25519 as nobleEd25519, x25519 as nobleX25519 } from "@noble/curves/ed25519.js";
import {
  diffieHellman,
  generateKeyPairSync,
  sign as nativeSign,
  verify as nativeVerify,
} from "node:crypto";
import { ED25519_DER, X25519_DER, privateKeyObject, publicKeyObject } from "../src/crypto/der.ts";
import { ed25519Generate, ed25519Sign, ed25519Verify, randomBytes, x25519, x25519Generate } from "../src/crypto/index.ts";
import {
  ClientHandshake,
  ServerHandshake,
  clientAuthSignatureInput,
  signClientAuth,
  verifyClientAuth,
} from "../src/protocol/handshake.ts";
import { type Measurement, measureGroup } from "./lib/measure.ts";
import { perSecond, ratio, spread, table, time } from "./lib/table.ts";
import type { Section } from "./micro.ts";

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench: sanity check failed: ${what}`);
}

export function handshakeSection(): Section {
  const hostKey = ed25519Generate();
  const identity = ed25519Generate();

  /** One complete handshake; returns the ns spent in the server's calls. */
  function handshake(): number {
    const client = new ClientHandshake();
    const t0 = Bun.nanoseconds();
    const server = new ServerHandshake({ hostKey });
    const { reply, keys: serverKeys } = server.receiveHello(client.hello());
    const t1 = Bun.nanoseconds();
    const clientKeys = client.receive(reply);
    const sig = signClientAuth(identity.secretKey, clientKeys);
    const t2 = Bun.nanoseconds();
    const ok = verifyClientAuth(identity.publicKey, serverKeys, sig);
    const t3 = Bun.nanoseconds();
    check(ok, "client auth verifies");
    return t1 - t0 + (t3 - t2);
  }

  // Primitives on the real inputs: a peer's ephemeral and the auth signature input (H ‖ challenge).
  const peer = x25519Generate();
  const mine = x25519Generate();
  const msg = clientAuthSignatureInput(randomBytes(32), randomBytes(32));
  const sig = ed25519Sign(identity.secretKey, msg);

  // The same operations in @noble/curves and natively with cached key objects, with the same keys; first check they agree.
  check(Buffer.from(nobleX25519.scalarMult(mine.secretKey, peer.publicKey)).equals(x25519(mine.secretKey, peer.publicKey)), "noble X25519 matches src/crypto");
  check(Buffer.from(nobleEd25519.sign(msg, identity.secretKey)).equals(sig), "noble Ed25519 signature matches src/crypto");
  const nMine = privateKeyObject(X25519_DER, mine.secretKey);
  const nIdentity = privateKeyObject(ED25519_DER, identity.secretKey);
  check(
    diffieHellman({ privateKey: nMine, publicKey: publicKeyObject(X25519_DER, peer.publicKey) }).equals(x25519(mine.secretKey, peer.publicKey)),
    "native X25519 matches src/crypto",
  );
  check(nativeSign(null, msg, nIdentity).equals(sig), "native Ed25519 signature matches src/crypto");

  // Primitives first: they warm up the code the handshakes run.
  const [keygen, dh, signM, verifyM, full, server, nKeygen, nDh, nSign, nVerify, jKeygen, jDh, jSign, jVerify] = measureGroup([
    { name: "x25519 keygen", fn: () => x25519Generate() },
    { name: "x25519 shared secret", fn: () => x25519(mine.secretKey, peer.publicKey) },
    { name: "ed25519 sign", fn: () => ed25519Sign(identity.secretKey, msg) },
    { name: "ed25519 verify", fn: () => ed25519Verify(identity.publicKey, msg, sig) },
    { name: "handshake: full (both sides)", fn: handshake },
    {
      name: "handshake: server share",
      batch: (n) => {
        let ns = 0;
        for (let i = 0; i < n; i++) ns += handshake();
        return ns;
      },
    },
    // A native server gets raw keys off the wire and sends raw keys back, so imports/exports count.
    {
      name: "native x25519 keygen + raw export",
      fn: () => generateKeyPairSync("x25519").publicKey.export({ format: "der", type: "spki" }).subarray(12),
    },
    {
      name: "native x25519 (raw peer import + DH)",
      fn: () => diffieHellman({ privateKey: nMine, publicKey: publicKeyObject(X25519_DER, peer.publicKey) }),
    },
    { name: "native ed25519 sign (cached key)", fn: () => nativeSign(null, msg, nIdentity) },
    {
      name: "native ed25519 verify (raw key import)",
      fn: () => nativeVerify(null, msg, publicKeyObject(ED25519_DER, identity.publicKey), sig),
    },
    { name: "noble x25519 keygen", fn: () => nobleX25519.getPublicKey(randomBytes(32)) },
    { name: "noble x25519 shared secret", fn: () => nobleX25519.scalarMult(mine.secretKey, peer.publicKey) },
    { name: "noble ed25519 sign", fn: () => nobleEd25519.sign(msg, identity.secretKey) },
    { name: "noble ed25519 verify (zip215: false)", fn: () => nobleEd25519.verify(sig, msg, identity.publicKey, { zip215: false }) },
  ]);

  const serverSum = keygen.median + dh.median + signM.median + verifyM.median;
  const nativeServer = nKeygen.median + nDh.median + nSign.median + nVerify.median;
  const nobleServer = jKeygen.median + jDh.median + jSign.median + jVerify.median;

  const row = (label: string, m: Measurement, note = ""): string[] => [label, time(m.median), spread(m), perSecond(m.median), note];
  const est = (label: string, ns: number, note: string): string[] => [label, time(ns), "", perSecond(ns), note];
  const vs = (m: Measurement, base: Measurement, what: string): string => `${ratio(m.median / base.median)} ${what}`;
  const text = table(
    "Handshake (src/crypto = node:crypto X25519/Ed25519 behind raw-key wrappers; per op, median of samples)",
    ["op", "median", "min/max", "rate", "note"],
    [
      row("full handshake, both sides", full, `sum of primitives ×2 = ${time(2 * serverSum)}`),
      row("server share (new + receiveHello + verifyClientAuth)", server, `${ratio(server.median / serverSum)} its primitives`),
      null,
      row("x25519 keygen", keygen, vs(jKeygen, keygen, "for noble")),
      row("x25519 shared secret", dh, vs(jDh, dh, "for noble")),
      row("ed25519 sign", signM, vs(jSign, signM, "for noble")),
      row("ed25519 verify", verifyM, vs(jVerify, verifyM, "for noble")),
      est("sum: server primitives (keygen+dh+sign+verify)", serverSum, "server share ≈ this"),
      null,
      row("noble x25519 keygen", jKeygen),
      row("noble x25519 shared secret", jDh),
      row("noble ed25519 sign", jSign),
      row("noble ed25519 verify (zip215: false)", jVerify),
      est("sum: the same server primitives in @noble/curves", nobleServer, `${ratio(nobleServer / serverSum)} src/crypto's`),
      null,
      row("native x25519 keygen + raw export", nKeygen, vs(keygen, nKeygen, "for src/crypto")),
      row("native x25519 DH, private key object cached", nDh, vs(dh, nDh, "for src/crypto")),
      row("native ed25519 sign, key object cached", nSign, vs(signM, nSign, "for src/crypto")),
      row("native ed25519 verify (+ raw key import)", nVerify, vs(verifyM, nVerify, "for src/crypto")),
      est("floor: server primitives with cached key objects", nativeServer, `src/crypto's sum ${ratio(serverSum / nativeServer)} this`),
    ],
  );

  return {
    text,
    headline:
      `server handshake ${time(server.median)} = ${perSecond(server.median)} per core, ${ratio(server.median / serverSum)} its primitives; ` +
      `the same primitives in @noble/curves ${time(nobleServer)} (${ratio(nobleServer / serverSum)})`,
    measurements: [full, server, keygen, dh, signM, verifyM, nKeygen, nDh, nSign, nVerify, jKeygen, jDh, jSign, jVerify],
    summary: {
      fullHandshakeMs: full.median / 1e6,
      serverShareMs: server.median / 1e6,
      serverHandshakesPerSecondPerCore: 1e9 / server.median,
      serverPrimitivesSumMs: serverSum / 1e6,
      serverShareOverPrimitives: server.median / serverSum,
      nobleServerPrimitivesSumMs: nobleServer / 1e6,
      nobleOverSrcCrypto: nobleServer / serverSum,
      cachedKeyObjectsFloorMs: nativeServer / 1e6,
      srcCryptoOverFloor: serverSum / nativeServer,
    },
  };
}
