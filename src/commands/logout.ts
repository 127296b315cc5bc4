import { args, command } from "./define.ts";

export default command({
  meta: { name: "logout", description: "Revoke your session ticket on the server and delete it here" },
  args: {
    user: { type: "positional", description: "User name", required: true },
    ...args.server,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat logout alice"],
  async run({ args: a }) {
    const [{ logout, checkUserName }, { parseServerAddress }] = await Promise.all([import("../client/account.ts"), import("../client/connection.ts")]);
    checkUserName(a.user);
    const addr = parseServerAddress(a.server);
    const result = await logout({ addr, user: a.user, trust: { acceptNew: Boolean(a["accept-new-host"]) } });
    const said = { revoked: "logged out: ticket revoked on the server and deleted here", expired: "logged out: the ticket had already expired or been revoked; deleted it here", none: "not logged in" };
    process.stderr.write(`${said[result]}\n`);
  },
});
