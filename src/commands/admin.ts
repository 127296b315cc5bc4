import { args, command } from "./define.ts";
import { CliError, EXIT } from "./exit.ts";

/** The command's actions, as typed, and what each asks the server (PROTOCOL.md §7.10). */
const ACTIONS = { lock: "lock", unlock: "unlock", "end-sessions": "end_sessions" } as const;
const DONE = { lock: "locked", unlock: "unlocked", end_sessions: "ended the sessions of" } as const;

export default command({
  meta: { name: "admin", description: "As a server administrator: lock or unlock an account, or end its sessions at once" },
  args: {
    action: { type: "positional", description: "lock (it can no longer log in; its sessions end), unlock, or end-sessions (they end; it can log in again)", required: true },
    account: { type: "positional", description: "The account to act on", required: true },
    user: { type: "string", alias: ["u"], description: "You, the administrator (default: user in config.toml, else the only user logged in to this server)", valueHint: "NAME" },
    ...args.server,
    json: { type: "boolean", description: "Print the server's answer as one JSON object" },
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat admin lock mallory", "securechat admin unlock mallory -u root", "securechat admin end-sessions bob --json | jq .ended"],
  async run({ args: a }) {
    if (!Object.hasOwn(ACTIONS, a.action)) {
      throw new CliError(EXIT.USAGE, `unknown action "${a.action}"`, ["use lock, unlock or end-sessions, e.g. \"securechat admin lock USER\""]);
    }
    const action = ACTIONS[a.action as keyof typeof ACTIONS];
    const [{ administer, checkUserName }, { target }, { pickUser }] = await Promise.all([import("../client/account.ts"), import("./defaults.ts"), import("../client/sessions.ts")]);
    checkUserName(a.account);
    const t = await target(a.server);
    const user = pickUser(t.addr.id, a.user, t.config.user);
    checkUserName(user);
    const r = await administer({ addr: t.addr, user, trust: { acceptNew: Boolean(a["accept-new-host"]) } }, action, a.account);
    if (a.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    const ended = r.action === "unlock" ? "" : `: ${r.ended} live session${r.ended === 1 ? "" : "s"} ended`;
    process.stderr.write(`${DONE[r.action]} ${r.user}${ended}\n`);
  },
});
