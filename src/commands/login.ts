import { args, command } from "./define.ts";

export default command({
  meta: { name: "login", description: "Prove your identity (key + password) and store a session ticket for chat" },
  args: {
    user: { type: "positional", description: "User name", required: true },
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat login alice", "securechat login alice --password-stdin < ~/.secrets/securechat"],
  async run({ args: a }) {
    const [{ login, checkUserName }, { parseServerAddress }, { obtainPassword }] = await Promise.all([
      import("../client/account.ts"),
      import("../client/connection.ts"),
      import("../client/prompt.ts"),
    ]);
    checkUserName(a.user);
    const addr = parseServerAddress(a.server);
    const password = await obtainPassword({ fromStdin: Boolean(a["password-stdin"]), confirm: false });
    const w = await login({ addr, user: a.user, trust: { acceptNew: Boolean(a["accept-new-host"]) } }, password);
    const until = w.ticket_expires ? ` until ${new Date(w.ticket_expires).toISOString()}` : "";
    process.stderr.write(`logged in as ${w.user} at ${addr.id}${until}\n`);
  },
});
