import { args, command } from "./define.ts";

export default command({
  meta: { name: "register", description: "Create an account: a new identity key on this machine and a password" },
  args: {
    user: { type: "positional", description: "User name (a lowercase letter, then 1-31 of a-z 0-9 _ -)", required: true },
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: [
    "securechat register alice",
    "printf '%s\\n' \"$PASS\" | securechat register alice --password-stdin --server chat.example:7447 --accept-new-host",
  ],
  async run({ args: a }) {
    const [{ register, checkUserName }, { parseServerAddress }, { obtainPassword }, { identityPath }] = await Promise.all([
      import("../client/account.ts"),
      import("../client/connection.ts"),
      import("../client/prompt.ts"),
      import("../client/keystore.ts"),
    ]);
    checkUserName(a.user);
    const addr = parseServerAddress(a.server);
    const password = await obtainPassword({ fromStdin: Boolean(a["password-stdin"]), confirm: true });
    const w = await register({ addr, user: a.user, trust: { acceptNew: Boolean(a["accept-new-host"]) } }, password);
    const until = w.ticket_expires ? `; logged in until ${new Date(w.ticket_expires).toISOString()}` : "";
    process.stderr.write(`registered ${w.user} at ${addr.id}${until}\nidentity key: ${identityPath(addr.id, a.user)} (keep a backup: it cannot be recovered)\n`);
  },
});
