/**
 * The witness's HTTP interface (c2sp.org/tlog-witness; docs/TRANSCRIPT.md
 * §4.5) over Bun.serve, in front of transcript/witness.ts: bounded bodies,
 * a request bucket per source address; and the bounded body reader the
 * log's submitter (witnesses.ts) reads answers with.
 */
import { WITNESS_BODY_MAX, type Witness } from "../transcript/witness.ts";
import type { FloodPolicy } from "./flood.ts";
import { RateLimiter, sourceKey } from "./limits.ts";

/** Reads a request's or response's body of at most `max` bytes; null if it is longer (without reading the rest). */
export async function boundedBody(req: Request | Response, max: number): Promise<Uint8Array | null> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > max) return null;
  if (!req.body) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let n = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel();
      return null;
    }
    parts.push(value);
  }
  return Buffer.concat(parts);
}

/** Requests per source address (an IPv4 address or an IPv6 /64), by default: far above what a log sends (one a round, and one retry). */
export const WITNESS_REQUESTS: FloodPolicy = { rate: 20, burst: 100 };

/**
 * The witness's HTTP interface, with Bun.serve: `POST /add-checkpoint` and
 * `GET /<origin hash>/checkpoint` (the submission and monitoring prefixes
 * are both the root). Anything else is 404; bodies past
 * WITNESS_BODY_MAX are 413; a source past its request bucket gets 429.
 */
export function serveWitness(w: Witness, opts: { hostname: string; port: number; requests?: FloodPolicy }): ReturnType<typeof Bun.serve> {
  const limiter = new RateLimiter(opts.requests ?? WITNESS_REQUESTS);
  const sweep = setInterval(() => limiter.prune(Date.now()), 60_000);
  sweep.unref?.();
  const server = Bun.serve({
    hostname: opts.hostname,
    port: opts.port,
    maxRequestBodySize: WITNESS_BODY_MAX,
    async fetch(req, srv) {
      const wait = limiter.take(sourceKey(srv.requestIP(req)?.address ?? "unknown"), Date.now());
      if (wait > 0) return new Response("too many requests\n", { status: 429, headers: { "retry-after": String(Math.ceil(wait / 1000)) } });
      const path = new URL(req.url).pathname;
      if (path === "/add-checkpoint") {
        if (req.method !== "POST") return new Response("use POST\n", { status: 405, headers: { allow: "POST" } });
        const body = await boundedBody(req, WITNESS_BODY_MAX);
        if (body === null) return new Response("request body too large\n", { status: 413 });
        let text: string;
        try {
          text = new TextDecoder("utf-8", { fatal: true }).decode(body);
        } catch {
          return new Response("the body is not UTF-8\n", { status: 400 });
        }
        const a = w.addCheckpoint(text);
        return new Response(a.body, { status: a.status, headers: { "content-type": a.contentType } });
      }
      const m = /^\/([0-9a-f]{64})\/checkpoint$/.exec(path);
      if (m && (req.method === "GET" || req.method === "HEAD")) {
        const note = w.checkpointByHash(m[1]!);
        if (note === null) return new Response("no checkpoint cosigned for this log\n", { status: 404 });
        return new Response(note, { headers: { "content-type": "text/plain; charset=utf-8" } });
      }
      return new Response("not found\n", { status: 404 });
    },
    error() {
      return new Response("internal error\n", { status: 500 });
    },
  });
  const stop = server.stop.bind(server);
  return Object.assign(server, {
    stop: (closeActive?: boolean) => {
      clearInterval(sweep);
      return stop(closeActive);
    },
  });
}
