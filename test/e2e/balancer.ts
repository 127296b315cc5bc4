/**
 * For the e2e scripts in cluster mode (lib.sh, SECURECHAT_E2E_CLUSTER): a
 * round-robin TCP balancer, what docs/DEPLOY.md puts in front of the nodes
 * (HAProxy `balance roundrobin`), so that a script's one `$srv` address
 * spreads its connections over every node: each new connection goes to the
 * next node in turn, and to the one after when a node refuses the connect
 * (stopped or killed). The bytes pass untouched (the protocol is end to end).
 *
 * `bun test/e2e/balancer.ts PORT BACKENDS` listens on 127.0.0.1:PORT (0: any
 * free port), prints `listening PORT`, and reads the file BACKENDS (one node
 * port a line) at each connection, so a script changes the nodes behind it
 * by rewriting that file. Each connection's node is printed as `to PORT`.
 * Runs until SIGTERM.
 */
import { readFileSync } from "node:fs";
import { type Socket, connect, createServer } from "node:net";

const [portArg, backendsFile] = process.argv.slice(2);
if (portArg === undefined || backendsFile === undefined) throw new Error("usage: bun test/e2e/balancer.ts PORT BACKENDS");

let next = 0;

function backends(): number[] {
  try {
    return readFileSync(backendsFile!, "utf8").split("\n").filter((l) => /^\d+$/.test(l)).map(Number);
  } catch {
    return [];
  }
}

/** Connects to the first node, from the next in turn, that accepts; null when none does. */
async function pick(): Promise<Socket | null> {
  const ports = backends();
  const start = next++;
  for (let i = 0; i < ports.length; i++) {
    const port = ports[(start + i) % ports.length]!;
    const s = await new Promise<Socket | null>((resolve) => {
      const s = connect({ host: "127.0.0.1", port });
      s.once("connect", () => resolve(s));
      s.once("error", () => resolve(null));
    });
    if (s) {
      console.log(`to ${port}`);
      return s;
    }
  }
  return null;
}

const server = createServer({ pauseOnConnect: true }, (client) => {
  client.on("error", () => client.destroy());
  void pick().then((node) => {
    if (!node || client.destroyed) {
      node?.destroy();
      client.destroy();
      return;
    }
    node.on("error", () => node.destroy());
    node.on("close", () => client.destroy());
    client.on("close", () => node.destroy());
    client.pipe(node);
    node.pipe(client);
    client.resume();
  });
});
server.listen(Number(portArg), "127.0.0.1", () => {
  const a = server.address();
  console.log(`listening ${typeof a === "object" && a ? a.port : portArg}`);
});
process.once("SIGTERM", () => process.exit(0));
process.once("SIGINT", () => process.exit(0));
