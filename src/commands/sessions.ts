import { args, command } from "./define.ts";
import { CliError, EXIT } from "./exit.ts";

export default command({
  meta: { name: "sessions", description: "List where you are logged in, or end one of those sessions at once" },
  args: {
    action: { type: "positional", description: "\"revoke\" to end a session (default: list them)", required: false, valueHint: "revoke" },
    id: { type: "positional", description: "The session or ticket to end, as the list shows it", required: false, valueHint: "ID" },
    user: { type: "string", alias: ["u"], description: "User (default: user in config.toml, else the only user logged in to this server)", valueHint: "NAME" },
    ...args.server,
    json: { type: "boolean", description: "Print the server's answer as one JSON object" },
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat sessions", "securechat sessions revoke 3fa2c1d09b7e", "securechat sessions --json | jq '.live[] | select(.current | not)'"],
  async run({ args: a }) {
    const revoke = a.action !== undefined;
    if (revoke && a.action !== "revoke") throw new CliError(EXIT.USAGE, `unknown action "${a.action}"`, ['use "securechat sessions" to list, "securechat sessions revoke ID" to end one']);
    if (revoke && (a.id === undefined || !/^[0-9a-f]{12}$/.test(a.id))) {
      throw new CliError(EXIT.USAGE, a.id === undefined ? "revoke needs the ID of a session or ticket" : `"${a.id}" is not a session ID (12 hex digits)`, ['run "securechat sessions" to see the IDs']);
    }
    const [{ listSessions, revokeSession, checkUserName }, { target }, { pickUser }, { formatSessions }] = await Promise.all([
      import("../client/account.ts"),
      import("./defaults.ts"),
      import("../client/sessions.ts"),
      import("../client/sessionlist.ts"),
    ]);
    const t = await target(a.server);
    const user = pickUser(t.addr.id, a.user, t.config.user);
    checkUserName(user);
    const o = { addr: t.addr, user, trust: { acceptNew: Boolean(a["accept-new-host"]) } };
    if (revoke) {
      const r = await revokeSession(o, a.id!);
      if (a.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      process.stderr.write(`revoked ${r.id}: ${r.ended} live session${r.ended === 1 ? "" : "s"} ended\n`);
      return;
    }
    const list = await listSessions(o);
    process.stdout.write(a.json ? `${JSON.stringify(list)}\n` : formatSessions(list));
  },
});
