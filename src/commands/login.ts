import { args, command } from "./define.ts";
import { notImplemented } from "./pending.ts";

export default command({
  meta: { name: "login", description: "Prove your identity and store a session ticket for chat" },
  args: {
    user: { type: "positional", description: "User name", required: true },
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat login alice", "securechat login alice --password-stdin < pass.txt"],
  run: () => notImplemented("login", 3),
});
