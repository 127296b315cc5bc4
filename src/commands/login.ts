import { args, command } from "./define.ts";
import { isoTime } from "../time.ts";

export default command({
  meta: { name: "login", description: "Prove your identity (key + password) and store a session ticket for chat" },
  args: {
    user: { type: "positional", description: "User name (default: user in config.toml)", required: false },
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat login alice", "securechat login alice --password-stdin < ~/.secrets/securechat", "securechat login -s chat.example:7447"],
  async run({ args: a }) {
    const [{ login, checkUserName }, { obtainPassword }, { target, userOrConfigured }, { writeConfigIfAbsent, serverAddressText }] = await Promise.all([
      import("../client/account.ts"),
      import("../client/prompt.ts"),
      import("./defaults.ts"),
      import("../client/config.ts"),
    ]);
    const t = await target(a.server);
    const user = userOrConfigured(a.user, t, "securechat login");
    checkUserName(user);
    const addr = t.addr;
    const password = await obtainPassword({ fromStdin: Boolean(a["password-stdin"]), confirm: false });
    const w = await login({ addr, user, trust: { acceptNew: Boolean(a["accept-new-host"]) } }, password);
    const until = w.ticket_expires ? ` until ${isoTime(w.ticket_expires)}` : "";
    process.stderr.write(`logged in as ${w.user} at ${addr.id}${until}\n`);
    const wrote = writeConfigIfAbsent(addr, user);
    if (wrote) process.stderr.write(`wrote ${wrote}: server = "${serverAddressText(addr)}", user = "${user}" (the defaults from now on)\n`);
  },
});
