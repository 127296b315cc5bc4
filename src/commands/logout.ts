import { args, command } from "./define.ts";

export default command({
  meta: { name: "logout", description: "Revoke your session ticket on the server and delete it here" },
  args: {
    user: { type: "positional", description: "User name (default: user in config.toml)", required: false },
    ...args.server,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat logout alice", "securechat logout alice -s chat.example:7447"],
  async run({ args: a }) {
    const [{ logout, checkUserName }, { target, userOrConfigured }] = await Promise.all([import("../client/account.ts"), import("./defaults.ts")]);
    const t = await target(a.server);
    const user = userOrConfigured(a.user, t, "securechat logout");
    checkUserName(user);
    const result = await logout({ addr: t.addr, user, trust: { acceptNew: Boolean(a["accept-new-host"]) } });
    const said = { revoked: "logged out: ticket revoked on the server and deleted here", expired: "logged out: the ticket had already expired or been revoked; deleted it here", none: "not logged in" };
    process.stderr.write(`${said[result]}\n`);
  },
});
