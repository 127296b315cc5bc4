import { args, command } from "./define.ts";
import { notImplemented } from "./pending.ts";

export default command({
  meta: { name: "serve", description: "Run a securechat server" },
  args: {
    host: { type: "string", description: "Address to listen on", default: "127.0.0.1" },
    port: { type: "string", description: "TCP port to listen on", default: "7447" },
    ...args.data,
    ...args.debug,
  },
  examples: ["securechat serve", "securechat serve --host 0.0.0.0 --port 7447 --data /var/lib/securechat"],
  run: () => notImplemented("serve", 3),
});
