import { args, command } from "./define.ts";
import { isoTime } from "../time.ts";

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
    "securechat register alice -s chat.example:7447",
    "printf '%s\\n' \"$PASS\" | securechat register alice --password-stdin --server chat.example:7447 --accept-new-host",
  ],
  /**
   * In the order people expect (as ssh): the server's host key first (asked
   * about if new), then whether the name is free, and only then the
   * password, checked against the policy as soon as it is typed.
   */
  async run({ args: a }) {
    const [account, { obtainNewPassword }, { identityPath }, { target }, { writeConfigIfAbsent, serverAddressText }, { checkPassword }, { SecureChatError }] = await Promise.all([
      import("../client/account.ts"),
      import("../client/prompt.ts"),
      import("../client/keystore.ts"),
      import("./defaults.ts"),
      import("../client/config.ts"),
      import("../password.ts"),
      import("../errors.ts"),
    ]);
    const user = a.user;
    account.checkUserName(user);
    const { addr } = await target(a.server);
    const o = { addr, user, trust: { acceptNew: Boolean(a["accept-new-host"]) } };
    account.refuseExistingIdentity(o);
    const free = await account.nameAvailable(o);
    if (free === false) throw new SecureChatError("server_refused", `the name "${user}" is taken at ${addr.id}`, { detail: { refusal: "name_taken" } });
    if (free) process.stderr.write(`the name "${user}" is free at ${addr.id}\n`);
    const password = await obtainNewPassword({ fromStdin: Boolean(a["password-stdin"]), check: (pw) => checkPassword(pw, user) });
    const w = await account.register(o, password);
    const until = w.ticket_expires ? `; logged in until ${isoTime(w.ticket_expires)}` : "";
    process.stderr.write(`registered ${w.user} at ${addr.id}${until}\nidentity key: ${identityPath(addr.id, user)} (back it up: securechat key export)\n`);
    const wrote = writeConfigIfAbsent(addr, user);
    if (wrote) process.stderr.write(`wrote ${wrote}: server = "${serverAddressText(addr)}", user = "${user}" (the defaults from now on)\n`);
  },
});
