/**
 * The witness (src/transcript/witness.ts) through its HTTP interface, run
 * in-process on a loopback port: every answer c2sp.org/tlog-witness
 * prescribes (200 with a cosignature, 400, 403, 404, 409 with
 * text/x.tlog.size, 422, 413), and its state, which survives a restart and
 * is on disk before the 200 leaves.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import * as crypto from "../../src/crypto/index.ts";
import { ed25519Generate, ed25519Sign } from "../../src/crypto/index.ts";
import { noteCosignatures, parseCosignerKey } from "../../src/transcript/cosignature.ts";
import { checkpointText, formatNote, parseVerifierKey, signatureLine } from "../../src/transcript/note.ts";
import { serveWitness } from "../../src/server/witnesshttp.ts";
import { WITNESS_BODY_MAX, Witness } from "../../src/transcript/witness.ts";
import { tempDir } from "./helpers.ts";
import { TestLog } from "./testlog.ts";

let stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

function start(dir: string, logs: TestLog[], requests?: { rate: number; burst: number }): { w: Witness; url: string } {
  const w = new Witness({ dir, logs: logs.map((l) => parseVerifierKey(l.vkey)) });
  const server = serveWitness(w, { hostname: "127.0.0.1", port: 0, requests });
  stops.push(() => server.stop(true));
  return { w, url: `http://127.0.0.1:${server.port}` };
}

async function post(url: string, body: string | Uint8Array): Promise<{ status: number; type: string; text: string }> {
  const r = await fetch(`${url}/add-checkpoint`, { method: "POST", body });
  return { status: r.status, type: r.headers.get("content-type") ?? "", text: await r.text() };
}

/** A witness that cosigned a first checkpoint of a log of `n` entries. */
async function cosignedFirst(n: number): Promise<{ log: TestLog; url: string }> {
  const log = new TestLog();
  const { url } = start(tempDir("witness"), [log]);
  log.append(n);
  expect((await post(url, log.body(0))).status).toBe(200);
  return { log, url };
}

describe("add-checkpoint", () => {
  test("a first checkpoint (old 0), then one consistent with it: 200 with a cosignature that verifies under the witness's vkey", async () => {
    const dir = tempDir("witness");
    const log = new TestLog();
    const { w, url } = start(dir, [log]);
    expect(statSync(join(dir, "witness_key")).mode & 0o777).toBe(0o600);
    log.append(5);
    const first = await post(url, log.body(0));
    expect(first.status).toBe(200);
    expect(first.text).toMatch(/^\u2014 securechat-witness\/[0-9a-f]{16} [A-Za-z0-9+/=]+\n$/);
    expect(noteCosignatures(log.note() + first.text, [parseCosignerKey(w.vkey)]).length).toBe(1);
    log.append(8);
    const second = await post(url, log.body(5));
    expect(second.status).toBe(200);
    expect(noteCosignatures(log.note() + second.text, [parseCosignerKey(w.vkey)]).length).toBe(1);
    // The same checkpoint again (old = size): the roots agree, cosigned again.
    expect((await post(url, log.body(13))).status).toBe(200);
  });

  test("old is not the size it last cosigned: 409, text/x.tlog.size, its size; the log then retries from it", async () => {
    const { log, url } = await cosignedFirst(7);
    log.append(3);
    const r = await post(url, log.body(3));
    expect([r.status, r.type, r.text]).toEqual([409, "text/x.tlog.size", "7\n"]);
    expect((await post(url, log.body(7))).status).toBe(200);
  });

  test("a fork (another history of the same size, or a proof from the cosigned tree that fails) is 422; a rollback is 409 with the larger size", async () => {
    const { log, url } = await cosignedFirst(6);
    const fork = new TestLog(log.origin);
    Object.assign(fork, { key: log.key });
    fork.append(6, " rewritten");
    const sameSize = await post(url, fork.body(6));
    expect(sameSize.status).toBe(422);
    fork.append(4, " rewritten");
    // The fork's own proof from 6 to 10 does not lead from the root the witness cosigned.
    expect((await post(url, fork.body(6))).status).toBe(422);
    // A rolled-back log (3 entries) cannot claim old 6 (old > size: 400), and old 3 is not what it cosigned: 409 "6".
    expect((await post(url, log.body(6, 3, []))).status).toBe(400);
    expect(await post(url, log.body(3, 3, []))).toMatchObject({ status: 409, text: "6\n" });
    // old 0 is checked against its size first: 409, whatever follows.
    expect((await post(url, `old 0\n${toBase64(new Uint8Array(32))}\n\n${log.note()}`)).status).toBe(409);
  });

  test("an unknown origin is 404; a checkpoint the log's key did not sign, or whose signature is broken, is 403", async () => {
    const log = new TestLog();
    const { url } = start(tempDir("witness"), [log]);
    log.append(2);
    const stranger = new TestLog("other.example/log");
    stranger.append(2);
    expect((await post(url, stranger.body(0))).status).toBe(404);
    expect((await post(url, log.body(0, 2, [], log.note(2, ed25519Generate())))).status).toBe(403);
    const note = log.note();
    const at = note.length - 10;
    const broken = note.slice(0, at) + (note[at] === "A" ? "B" : "A") + note.slice(at + 1);
    expect((await post(url, log.body(0, 2, [], broken))).status).toBe(403);
  });

  test("malformed bodies are 400; a proof longer than 63 lines is 400; a body past the bound is 413; other paths 404, GET on add-checkpoint 405", async () => {
    const log = new TestLog();
    const { url } = start(tempDir("witness"), [log]);
    log.append(1);
    expect((await post(url, "hello\n")).status).toBe(400);
    expect((await post(url, `old 01\n\n${log.note()}`)).status).toBe(400);
    expect((await post(url, `old 0\nnot base64\n\n${log.note()}`)).status).toBe(400);
    expect((await post(url, `old 0\n${`${toBase64(new Uint8Array(32))}\n`.repeat(64)}\n${log.note()}`)).status).toBe(400);
    expect((await post(url, new Uint8Array(WITNESS_BODY_MAX + 1).fill(0x41))).status).toBe(413);
    expect((await fetch(`${url}/add-checkpoint`)).status).toBe(405);
    expect((await fetch(`${url}/elsewhere`)).status).toBe(404);
    // Still serving after all of it.
    expect((await post(url, log.body(0))).status).toBe(200);
  });

  test("a source past its request bucket gets 429 with Retry-After, and nothing it sends is looked at", async () => {
    const log = new TestLog();
    const { url } = start(tempDir("witness"), [log], { rate: 1, burst: 3 });
    log.append(2);
    const answers: { status: number; retry: string | null }[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await fetch(`${url}/add-checkpoint`, { method: "POST", body: log.body(0) });
      answers.push({ status: r.status, retry: r.headers.get("retry-after") });
    }
    expect(answers.slice(0, 3).map((a) => a.status)).toEqual([200, 409, 409]);
    const refused = answers.find((a) => a.status === 429);
    expect(refused).toBeDefined();
    expect(Number(refused!.retry)).toBeGreaterThanOrEqual(1);
  });

  test("the log's signature line repeated (a replay anyone can build from the public checkpoint) costs one signature check, not one per line (and is cosigned)", async () => {
    const { log, url } = await cosignedFirst(4);
    const note = log.note();
    const split = note.indexOf("\n\n") + 2;
    const repeated = note.slice(0, split) + note.slice(split).repeat(100);
    const verify = spyOn(crypto, "ed25519Verify");
    try {
      const r = await post(url, log.body(4, 4, [], repeated));
      expect(r.status).toBe(200);
      expect(verify).toHaveBeenCalledTimes(1);
    } finally {
      verify.mockRestore();
    }
  });

  test("a proof from 0 must be empty; a size-0 checkpoint must have the empty tree's root (422 otherwise)", async () => {
    const log = new TestLog();
    const { url } = start(tempDir("witness"), [log]);
    // A proof from 0 must be empty.
    log.append(2);
    expect((await post(url, `old 0\n${toBase64(new Uint8Array(32))}\n\n${log.note()}`)).status).toBe(422);
    expect((await post(url, log.body(0, 0))).status).toBe(200);
    const text = checkpointText({ origin: log.origin, size: 0, root: new Uint8Array(32) });
    const note = formatNote(text, [signatureLine(text, log.origin, log.key.publicKey, (m) => ed25519Sign(log.key.secretKey, m))]);
    expect((await post(url, `old 0\n\n${note}`)).status).toBe(422);
  });
});

describe("state", () => {
  test("what it cosigned is on disk when the 200 arrives, and a restarted witness (same key) still refuses a rollback", async () => {
    const dir = tempDir("witness");
    const log = new TestLog();
    const a = start(dir, [log]);
    log.append(9);
    expect((await post(a.url, log.body(0))).status).toBe(200);
    const state = JSON.parse(readFileSync(join(dir, "witness.state"), "utf8"));
    expect(state.logs[log.origin].size).toBe(9);
    expect(statSync(join(dir, "witness.state")).mode & 0o777).toBe(0o600);
    for (const s of stops.splice(0)) s();
    const b = start(dir, [log]);
    expect(b.w.vkey).toBe(a.w.vkey);
    expect(await post(b.url, log.body(0, 4, []))).toMatchObject({ status: 409, text: "9\n" });
    // The monitoring view serves the cosigned checkpoint, with both signatures.
    const hash = new Bun.CryptoHasher("sha256").update(log.origin).digest("hex");
    const got = await (await fetch(`${b.url}/${hash}/checkpoint`)).text();
    expect(noteCosignatures(got, [parseCosignerKey(b.w.vkey)]).length).toBe(1);
    expect(got.startsWith(`${log.origin}\n9\n`)).toBe(true);
  });

  test("a witness whose witness.state is gone (its key still there) refuses to start: it would cosign a fork of a log it had cosigned, from old 0", async () => {
    const dir = tempDir("witness");
    const log = new TestLog();
    const first = new Witness({ dir, logs: [parseVerifierKey(log.vkey)] });
    log.append(6);
    expect(first.addCheckpoint(log.body(0)).status).toBe(200);
    rmSync(join(dir, "witness.state"));
    expect(() => new Witness({ dir, logs: [parseVerifierKey(log.vkey)] })).toThrow(/witness\.state is missing/);
    // A witness never used (made, then restarted before anything was sent to it) starts as before.
    const fresh = tempDir("witness");
    new Witness({ dir: fresh, logs: [parseVerifierKey(log.vkey)] });
    expect(new Witness({ dir: fresh, logs: [parseVerifierKey(log.vkey)] }).addCheckpoint(log.body(0)).status).toBe(200);
  });

  test("a replay costs no write: the checkpoint it holds, sent again, is cosigned without rewriting the state; refusals replayed are logged once", async () => {
    const dir = tempDir("witness");
    const log = new TestLog();
    const warned: string[] = [];
    const w = new Witness({ dir, logs: [parseVerifierKey(log.vkey)], log: { info() {}, warn: (e) => void warned.push(e) } });
    log.append(5);
    expect(w.addCheckpoint(log.body(0)).status).toBe(200);
    const ino = statSync(join(dir, "witness.state")).ino;
    for (let i = 0; i < 5; i++) expect(w.addCheckpoint(log.body(5)).status).toBe(200);
    expect(statSync(join(dir, "witness.state")).ino).toBe(ino);
    // An old checkpoint replayed at it: 409 each time, one line in its log.
    for (let i = 0; i < 5; i++) expect(w.addCheckpoint(log.body(3, 3, [])).status).toBe(409);
    expect(warned).toEqual(["witness_refused"]);
  });
});
