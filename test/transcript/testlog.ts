/** A log in memory for witness tests: leaves, checkpoints and consistency proofs straight from RFC 9162 §2.1. */
import { toBase64, utf8 } from "../../src/bytes.ts";
import { ed25519Generate, ed25519Sign } from "../../src/crypto/index.ts";
import { EMPTY_ROOT, type Hash, consistencyProof, leafHash, nodeHash } from "../../src/transcript/merkle.ts";
import { checkpointText, formatNote, formatVerifierKey, signatureLine } from "../../src/transcript/note.ts";

export class TestLog {
  readonly key = ed25519Generate();
  leaves: Uint8Array[] = [];
  constructor(readonly origin = "log.example/test") {}
  get vkey(): string {
    return formatVerifierKey(this.origin, this.key.publicKey);
  }
  append(n: number, tag = ""): void {
    for (let i = 0; i < n; i++) this.leaves.push(utf8(`entry ${this.leaves.length}${tag}`));
  }
  #mth(from: number, to: number): Hash {
    if (to - from === 1) return leafHash(this.leaves[from]!);
    let k = 1;
    while (k * 2 < to - from) k *= 2;
    return nodeHash(this.#mth(from, from + k), this.#mth(from + k, to));
  }
  root(n = this.leaves.length): Hash {
    return n === 0 ? EMPTY_ROOT : this.#mth(0, n);
  }
  note(n = this.leaves.length, key = this.key): string {
    const text = checkpointText({ origin: this.origin, size: n, root: new Uint8Array(this.root(n)) });
    return formatNote(text, [signatureLine(text, this.origin, key.publicKey, (m) => ed25519Sign(key.secretKey, m))]);
  }
  proof(m: number, n = this.leaves.length): Hash[] {
    return m === 0 ? [] : consistencyProof(m, n, (level, index) => this.#mth(index * 2 ** level, (index + 1) * 2 ** level));
  }
  body(old: number, n = this.leaves.length, proof = this.proof(old, n), note = this.note(n)): string {
    return `old ${old}\n${proof.map((h) => `${toBase64(h)}\n`).join("")}\n${note}`;
  }
}

