/**
 * A stand-in for a man in the middle without the host key, for the e2e
 * scripts: listens on 127.0.0.1 (a free port, printed on stdout as the first
 * line) and answers every client's first frame with a cleartext `error`
 * (PROTOCOL.md §4.4 step 1) whose code is `server_busy` and whose message is
 * argv[2], then closes. Runs until killed.
 *
 *   bun test/e2e/fake_error_server.ts "MESSAGE" > port.txt &
 */
const message = process.argv[2] ?? "busy";
const body = new TextEncoder().encode(JSON.stringify({ type: "error", code: "server_busy", message }));
const frame = new Uint8Array(4 + body.length);
new DataView(frame.buffer).setUint32(0, body.length, false);
frame.set(body, 4);

const listener = Bun.listen<{ got: number; answered: boolean }>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(socket) {
      socket.data = { got: 0, answered: false };
    },
    data(socket, chunk) {
      socket.data.got += chunk.length;
      // A frame header and a body: a client_hello has arrived (or enough of one).
      if (socket.data.got > 4 && !socket.data.answered) {
        socket.data.answered = true;
        socket.write(frame);
        socket.end();
      }
    },
  },
});
process.stdout.write(`${listener.port}\n`);
