/**
 * Framing (src/protocol/framing.ts): 4-byte big-endian length ‖ body,
 * 1 ≤ length ≤ limit. What a peer sees: the same bodies in the same order
 * however TCP splits or coalesces the bytes; an oversize or empty header is
 * refused as soon as its 4 bytes are in (before any body byte is buffered),
 * and a failed decoder stays failed. `feed` hands each body to its callback
 * before it reads the next header, so a limit raised while handling one frame
 * applies to the next frame of the same read.
 */
import { describe, expect, test } from "bun:test";
import { SecureChatError } from "../../src/errors.ts";
import { FrameDecoder, encodeFrame, frameHeader } from "../../src/protocol/framing.ts";
import { FRAME_HEADER_LENGTH, MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { SEED, bytesEqual, codeOf, expectCode, hex, rng } from "./helpers.ts";

console.log(`framing.test.ts: PROTOCOL_TEST_SEED=${SEED}`);
const r = rng(SEED ^ 0xf4a3);

/** Compares decoded bodies with the expected ones; returns a description of the first difference. */
function diff(got: Uint8Array[], want: Uint8Array[]): string | null {
  if (got.length !== want.length) return `got ${got.length} bodies, want ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    if (!bytesEqual(got[i]!, want[i]!)) return `body ${i} differs (len ${got[i]!.length} vs ${want[i]!.length})`;
  }
  return null;
}

describe("frameHeader / encodeFrame", () => {
  test.each([
    [1, "00000001"],
    [0x0102_0304, "01020304"],
    [MAX_FRAME_PRELOGIN, "00001000"],
    [MAX_FRAME, "00010000"],
    [2 ** 32 - 1, "ffffffff"],
  ])("frameHeader(%p) is big-endian %s", (n, want) => {
    expect(hex(frameHeader(n))).toBe(want);
  });

  test("encodeFrame is header ‖ body", () => {
    const body = r.bytes(300);
    const f = encodeFrame(body);
    expect(f.length).toBe(FRAME_HEADER_LENGTH + 300);
    expect(hex(f.subarray(0, 4))).toBe("0000012c");
    expect(bytesEqual(f.subarray(4), body)).toBe(true);
  });

  test("encodeFrame rejects an empty body with frame_empty", () => {
    expectCode(() => encodeFrame(new Uint8Array(0)), "frame_empty");
    expectCode(() => encodeFrame(new Uint8Array(0), MAX_FRAME_PRELOGIN), "frame_empty");
  });

  test.each([MAX_FRAME_PRELOGIN, MAX_FRAME])("encodeFrame at limit %p: limit−1 and limit accepted, limit+1 frame_too_large", (limit) => {
    expect(encodeFrame(new Uint8Array(limit - 1), limit).length).toBe(limit - 1 + 4);
    expect(encodeFrame(new Uint8Array(limit), limit).length).toBe(limit + 4);
    expectCode(() => encodeFrame(new Uint8Array(limit + 1), limit), "frame_too_large");
  });

  test("encodeFrame's default limit is MAX_FRAME", () => {
    expect(encodeFrame(new Uint8Array(MAX_FRAME)).length).toBe(MAX_FRAME + 4);
    expectCode(() => encodeFrame(new Uint8Array(MAX_FRAME + 1)), "frame_too_large");
  });
});

describe("FrameDecoder: the same bodies however the stream is cut", () => {
  // Several frames of different sizes, including 1 byte and right at the limit.
  const limit = MAX_FRAME_PRELOGIN;
  const sizes = [1, 2, 3, 255, 256, 1, limit - 1, 17, limit, 1];
  const bodies = sizes.map((n) => r.bytes(n));
  const stream = Buffer.concat(bodies.map((b) => encodeFrame(b, limit)));

  test("all coalesced in one push", () => {
    const d = new FrameDecoder(limit);
    expect(diff(d.push(stream), bodies)).toBeNull();
    expect(d.pending).toBe(0);
  });

  test("split into two chunks at every split point", () => {
    const failures: string[] = [];
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder(limit);
      const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      const problem = diff(got, bodies) ?? (d.pending === 0 ? null : `pending ${d.pending}`);
      if (problem) failures.push(`cut ${cut}: ${problem}`);
    }
    expect(failures).toEqual([]);
  });

  test("fed one byte at a time; pending counts the incomplete frame's bytes", () => {
    const d = new FrameDecoder(limit);
    const got: Uint8Array[] = [];
    const failures: string[] = [];
    // Offset of each frame's start, to know how many bytes are pending at each point.
    let frameStart = 0;
    let frame = 0;
    for (let i = 0; i < stream.length; i++) {
      const out = d.push(stream.subarray(i, i + 1));
      got.push(...out);
      const frameEnd = frameStart + 4 + sizes[frame]!;
      if (i + 1 === frameEnd) {
        if (out.length !== 1) failures.push(`byte ${i}: frame ${frame} complete but ${out.length} bodies returned`);
        if (d.pending !== 0) failures.push(`byte ${i}: pending ${d.pending} after a complete frame`);
        frameStart = frameEnd;
        frame++;
      } else {
        if (out.length !== 0) failures.push(`byte ${i}: ${out.length} bodies returned mid-frame`);
        if (d.pending !== i + 1 - frameStart) failures.push(`byte ${i}: pending ${d.pending}, want ${i + 1 - frameStart}`);
      }
    }
    expect(failures).toEqual([]);
    expect(diff(got, bodies)).toBeNull();
  });

  test("random multi-chunk splits (seeded)", () => {
    const failures: string[] = [];
    for (let trial = 0; trial < 200; trial++) {
      const d = new FrameDecoder(limit);
      const got: Uint8Array[] = [];
      const cuts: number[] = [];
      let i = 0;
      while (i < stream.length) {
        const n = Math.min(stream.length - i, r.int(0, 3) === 0 ? r.int(0, 5) : r.int(0, 3000));
        cuts.push(n);
        got.push(...d.push(stream.subarray(i, i + n)));
        i += n;
      }
      const problem = diff(got, bodies);
      if (problem) failures.push(`chunks ${cuts.join(",")}: ${problem}`);
    }
    expect(failures).toEqual([]);
  });

  test("empty pushes are harmless, anywhere", () => {
    const d = new FrameDecoder(limit);
    expect(d.push(new Uint8Array(0))).toEqual([]);
    const got = [...d.push(stream.subarray(0, 2)), ...d.push(new Uint8Array(0)), ...d.push(stream.subarray(2, 7)), ...d.push(new Uint8Array(0)), ...d.push(stream.subarray(7))];
    expect(diff(got, bodies)).toBeNull();
  });

  test("bodies are fresh copies: mutating the input or another body does not change them", () => {
    const d = new FrameDecoder(limit);
    const chunk = stream.slice();
    const got = d.push(chunk);
    chunk.fill(0xee);
    got[0]!.fill(0xee);
    expect(diff(got.slice(1), bodies.slice(1))).toBeNull();
  });
});

describe("FrameDecoder: length boundaries", () => {
  for (const limit of [MAX_FRAME_PRELOGIN, MAX_FRAME]) {
    test(`limit ${limit}: body of limit−1 and limit accepted`, () => {
      for (const n of [limit - 1, limit]) {
        const body = r.bytes(n);
        const d = new FrameDecoder(limit);
        const got = d.push(encodeFrame(body, limit));
        expect(diff(got, [body])).toBeNull();
        expect(d.pending).toBe(0);
      }
    });

    test(`limit ${limit}: header of limit+1 refused with frame_too_large before any body byte`, () => {
      const d = new FrameDecoder(limit);
      expectCode(() => d.push(frameHeader(limit + 1)), "frame_too_large");
      expect(d.pending).toBeLessThanOrEqual(FRAME_HEADER_LENGTH);
    });
  }

  test.each([2 ** 31, 2 ** 32 - 1, MAX_FRAME + 1])("header length %p: frame_too_large as soon as the 4 header bytes are in, no body supplied", (n) => {
    const d = new FrameDecoder(MAX_FRAME);
    const h = frameHeader(n);
    // Three header bytes: nothing decided yet, nothing returned.
    for (let i = 0; i < 3; i++) {
      expect(d.push(h.subarray(i, i + 1))).toEqual([]);
      expect(d.pending).toBe(i + 1);
    }
    // The fourth byte decides; no body byte has been offered at all.
    expectCode(() => d.push(h.subarray(3, 4)), "frame_too_large");
    expect(d.pending).toBeLessThanOrEqual(FRAME_HEADER_LENGTH);
  });

  test("a 2^32−1 header does not make the decoder allocate or hold the body", () => {
    // A decoder that allocated or buffered before checking would fail differently (a RangeError, or no error
    // and a growing pending); this one must refuse on the header.
    const d = new FrameDecoder(MAX_FRAME);
    expectCode(() => d.push(Buffer.concat([frameHeader(2 ** 32 - 1), new Uint8Array(1000)])), "frame_too_large");
    expect(d.pending).toBeLessThanOrEqual(FRAME_HEADER_LENGTH);
  });

  test("zero length is frame_empty", () => {
    const d = new FrameDecoder(MAX_FRAME);
    expectCode(() => d.push(frameHeader(0)), "frame_empty");
    expect(d.pending).toBeLessThanOrEqual(FRAME_HEADER_LENGTH);
  });

  test("a bad header after good frames in the same push throws (the chunk's earlier bodies are not handed out)", () => {
    const d = new FrameDecoder(MAX_FRAME_PRELOGIN);
    const chunk = Buffer.concat([encodeFrame(new Uint8Array([1])), encodeFrame(new Uint8Array([2])), frameHeader(0)]);
    expectCode(() => d.push(chunk), "frame_empty");
  });
});

describe("FrameDecoder: failure is sticky", () => {
  test.each([
    ["frame_too_large", frameHeader(MAX_FRAME_PRELOGIN + 1)],
    ["frame_empty", frameHeader(0)],
  ] as const)("after %s every later push throws the same code", (code, bad) => {
    const d = new FrameDecoder(MAX_FRAME_PRELOGIN);
    expect(d.push(encodeFrame(new Uint8Array([7]))).length).toBe(1);
    expectCode(() => d.push(bad), code);
    // A perfectly valid frame, an empty chunk, a single byte: all refused with the same code.
    expectCode(() => d.push(encodeFrame(new Uint8Array([1, 2, 3]))), code);
    expectCode(() => d.push(new Uint8Array(0)), code);
    expectCode(() => d.push(new Uint8Array([0])), code);
    // Raising the limit does not revive it.
    d.limit = MAX_FRAME;
    expectCode(() => d.push(encodeFrame(new Uint8Array([1, 2, 3]))), code);
  });
});

describe("FrameDecoder: changing limit", () => {
  test("a new limit applies to the next frame", () => {
    const d = new FrameDecoder(MAX_FRAME_PRELOGIN);
    const big = r.bytes(MAX_FRAME_PRELOGIN + 1000);
    d.limit = MAX_FRAME;
    expect(d.limit).toBe(MAX_FRAME);
    expect(diff(d.push(encodeFrame(big)), [big])).toBeNull();
    d.limit = MAX_FRAME_PRELOGIN;
    expectCode(() => d.push(encodeFrame(big)), "frame_too_large");
  });

  test("lowering the limit mid-body does not affect the frame whose header was already accepted", () => {
    const d = new FrameDecoder(MAX_FRAME);
    const big = r.bytes(10_000);
    const f = encodeFrame(big);
    expect(d.push(f.subarray(0, 100))).toEqual([]);
    d.limit = MAX_FRAME_PRELOGIN;
    expect(diff(d.push(f.subarray(100)), [big])).toBeNull();
    // …but the next one is held to it.
    expectCode(() => d.push(f), "frame_too_large");
  });

  test("lowering the limit while a header is half read applies to that frame", () => {
    const d = new FrameDecoder(MAX_FRAME);
    const f = encodeFrame(r.bytes(5000));
    expect(d.push(f.subarray(0, 2))).toEqual([]);
    d.limit = MAX_FRAME_PRELOGIN;
    expectCode(() => d.push(f.subarray(2)), "frame_too_large");
  });

  test("raising the limit lets a previously oversize length through", () => {
    const d = new FrameDecoder(10);
    expect(codeOf(() => new FrameDecoder(10).push(frameHeader(11)))).toBe("frame_too_large");
    d.limit = 11;
    const body = r.bytes(11);
    expect(diff(d.push(encodeFrame(body, 11)), [body])).toBeNull();
  });
});

describe("FrameDecoder.feed: each body is handed over before the next header is read", () => {
  // PROTOCOL.md §2: a limit change made while handling a frame applies to the very next frame, even when
  // both frames arrived in one read (a server's welcome and a large record right behind it).
  const a = r.bytes(100);
  const b = r.bytes(5000);
  const chunk = Buffer.concat([encodeFrame(a, MAX_FRAME_PRELOGIN), encodeFrame(b, MAX_FRAME)]);

  test("limit 4096, one chunk with A (small) and B (5000 bytes); onFrame(A) raises the limit to 65536 → both delivered", () => {
    const d = new FrameDecoder(MAX_FRAME_PRELOGIN);
    const got: Uint8Array[] = [];
    d.feed(chunk, (body) => {
      got.push(body);
      if (got.length === 1) d.limit = MAX_FRAME;
    });
    expect(diff(got, [a, b])).toBeNull();
    expect(d.pending).toBe(0);
  });

  test("the same chunk through push() (collect, then act) at limit 4096 → frame_too_large, and A is not handed out", () => {
    const d = new FrameDecoder(MAX_FRAME_PRELOGIN);
    let out: Uint8Array[] | undefined;
    expectCode(() => {
      out = d.push(chunk);
    }, "frame_too_large");
    expect(out).toBeUndefined();
  });

  test("push() is feed() collecting into an array: same bodies for any split", () => {
    for (const cut of [0, 1, 3, 4, 50, 104, 105, 108, 2000, chunk.length]) {
      const viaFeed: Uint8Array[] = [];
      const d1 = new FrameDecoder(MAX_FRAME);
      d1.feed(chunk.subarray(0, cut), (x) => viaFeed.push(x));
      d1.feed(chunk.subarray(cut), (x) => viaFeed.push(x));
      const d2 = new FrameDecoder(MAX_FRAME);
      const viaPush = [...d2.push(chunk.subarray(0, cut)), ...d2.push(chunk.subarray(cut))];
      expect([cut, diff(viaFeed, [a, b]), diff(viaPush, [a, b])]).toEqual([cut, null, null]);
    }
  });

  test("lowering the limit inside onFrame refuses the next frame of the same chunk", () => {
    const d = new FrameDecoder(MAX_FRAME);
    const got: Uint8Array[] = [];
    expectCode(
      () =>
        d.feed(chunk, (body) => {
          got.push(body);
          d.limit = MAX_FRAME_PRELOGIN;
        }),
      "frame_too_large",
    );
    expect(diff(got, [a])).toBeNull();
  });

  test("a handler that throws stops the decoder for good: its error propagates, later feeds throw frame_handler", () => {
    const d = new FrameDecoder(MAX_FRAME);
    const got: Uint8Array[] = [];
    const boom = new Error("handler failed");
    expect(() =>
      d.feed(chunk, (body) => {
        got.push(body);
        throw boom;
      }),
    ).toThrow(boom);
    expect(got.length).toBe(1);
    expectCode(() => d.feed(encodeFrame(new Uint8Array([1])), () => {}), "frame_handler");
    expectCode(() => d.push(new Uint8Array(0)), "frame_handler");
  });

  test("a handler that throws a SecureChatError makes that error sticky", () => {
    const d = new FrameDecoder(MAX_FRAME);
    expectCode(
      () =>
        d.feed(chunk, () => {
          throw new SecureChatError("protocol_violation", "test");
        }),
      "protocol_violation",
    );
    expectCode(() => d.push(encodeFrame(new Uint8Array([1]))), "protocol_violation");
  });
});
