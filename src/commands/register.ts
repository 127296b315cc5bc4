import { args, command } from "./define.ts";
import { notImplemented } from "./pending.ts";

export default command({
  meta: { name: "register", description: "Create an account: a new identity key on this machine and a password" },
  args: {
    user: { type: "positional", description: "User name (a-z, then 1-31 of a-z 0-9 _ -)", required: true },
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat register alice", "printf '%s\\n' \"$PASS\" | securechat register alice --password-stdin --server chat.example:7447"],
  run: () => notImplemented("register", 3),
});
