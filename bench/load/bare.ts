/**
 * The baseline: a bare relay with securechat's framing (4-byte length) and
 * socket code (`Framed`, Bun.listen), but no crypto and no JSON. Every
 * connection is in one room; a frame received is queued for every other
 * connection, and the sender gets a 1-byte ack frame (so the generator's
 * window works as with securechat's acks). Queues are flushed once per
 * event-loop turn (setImmediate), all of a connection's frames in one write,
 * as securechat coalesces its records. Bodies are forwarded unchanged (the
 * load generator's latency mode embeds its send time in them). Prints
 * {"port": P}; SIGTERM stops it.
 *
 *   bun run bench/load/bare.ts [--cert FILE --key FILE]
 *
 * With --cert and --key (PEM) it listens with TLS (Bun.listen({tls})): the
 * "Bun TLS relay" baseline, see bench/load/tls.ts.
 */
import type { Socket, TCPSocketListener } from "bun";
import { Framed } from "../../src/net/framed.ts";
import { encodeFrame } from "../../src/protocol/framing.ts";
import { MAX_FRAME } from "../../src/protocol/limits.ts";
import { emit, gcOnSignal, parseArgs } from "./common.ts";

const ACK = encodeFrame(new Uint8Array([1]));

class Conn {
  framed!: Framed;
  queue: Uint8Array[] = [];
  queued = 0;
}

export interface RelayOptions {
  /** PEM certificate chain and private key: listen with TLS. */
  tls?: { cert: string; key: string };
}

/** Starts the relay on 127.0.0.1 (an ephemeral port). */
export function startRelay(opts: RelayOptions = {}): TCPSocketListener<Conn> {
  const conns = new Set<Conn>();
  const dirty = new Set<Conn>();
  let scheduled = false;

  function post(c: Conn, frame: Uint8Array): void {
    c.queue.push(frame);
    c.queued += frame.length;
    dirty.add(c);
    if (scheduled) return;
    scheduled = true;
    setImmediate(flushAll);
  }

  function flushAll(): void {
    scheduled = false;
    const list = [...dirty];
    dirty.clear();
    for (const c of list) {
      if (c.queue.length === 0) continue;
      let out: Uint8Array;
      if (c.queue.length === 1) out = c.queue[0]!;
      else {
        out = new Uint8Array(c.queued);
        let at = 0;
        for (const f of c.queue) {
          out.set(f, at);
          at += f.length;
        }
      }
      c.queue = [];
      c.queued = 0;
      c.framed.send(out);
    }
  }

  return Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    socket: {
      open(socket: Socket<Conn>) {
        const c = new Conn();
        c.framed = new Framed(
          socket as Socket<unknown>,
          MAX_FRAME,
          {
            frame(body) {
              const frame = encodeFrame(body);
              for (const other of conns) if (other !== c) post(other, frame);
              post(c, ACK);
            },
            error() {
              c.framed.close("bad frame");
            },
            closed() {
              conns.delete(c);
              dirty.delete(c);
            },
          },
          64 * 1024 * 1024,
        );
        socket.data = c;
        conns.add(c);
      },
      data(socket, chunk) {
        socket.data?.framed.receive(chunk);
      },
      drain(socket) {
        socket.data?.framed.drain();
      },
      close(socket) {
        socket.data?.framed.socketClosed();
      },
      error(socket) {
        socket.data?.framed.socketClosed("socket error");
      },
    },
  });
}

/** Prints {"port": P, ...extra} and stops the relay on SIGTERM/SIGINT. */
export function serveRelay(opts: RelayOptions, extra: Record<string, unknown> = {}): void {
  const listener = startRelay(opts);
  const stop = (): void => {
    listener.stop(true);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  gcOnSignal();
  emit({ port: listener.port, ...extra });
}

if (import.meta.main) {
  const args = parseArgs(Bun.argv.slice(2));
  const cert = args.get("cert");
  const key = args.get("key");
  if ((cert === undefined) !== (key === undefined)) throw new Error("bench/load/bare: --cert and --key go together");
  serveRelay(cert && key ? { tls: { cert: await Bun.file(cert).text(), key: await Bun.file(key).text() } } : {});
}
