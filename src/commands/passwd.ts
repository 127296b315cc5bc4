import { args, command } from "./define.ts";

export default command({
  meta: { name: "passwd", description: "Change your password: on the server, and the one sealing your key here" },
  args: {
    user: { type: "positional", description: "User name (default: user in config.toml)", required: false },
    ...args.server,
    "password-stdin": { type: "boolean", description: "Read the current password, then the new one, from the first two lines of stdin" },
    "end-other-sessions": { type: "boolean", description: "Also end your other sessions and revoke their tickets (asked on a terminal)" },
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat passwd", "securechat passwd alice --end-other-sessions", "printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | securechat passwd alice --password-stdin"],
  async run({ args: a }) {
    const [{ changePassword, checkUserName }, prompt, { target, userOrConfigured }, { checkPassword }, { StdinLines }, { SecureChatError }] = await Promise.all([
      import("../client/account.ts"),
      import("../client/prompt.ts"),
      import("./defaults.ts"),
      import("../password.ts"),
      import("../client/stdin.ts"),
      import("../errors.ts"),
    ]);
    const t = await target(a.server);
    const user = userOrConfigured(a.user, t, "securechat passwd");
    checkUserName(user);
    let oldPassword: string;
    let newPassword: string;
    let endSessions = Boolean(a["end-other-sessions"]);
    if (a["password-stdin"]) {
      const lines = new StdinLines();
      try {
        oldPassword = (await lines.next()) ?? "";
        newPassword = (await lines.next()) ?? "";
      } finally {
        lines.close();
      }
      if (oldPassword === "" || newPassword === "") {
        throw new SecureChatError("password_stdin_empty", "--password-stdin: the first two lines of stdin must be the current password and the new one");
      }
      await checkPassword(newPassword, user);
    } else {
      oldPassword = await prompt.obtainPassword({ fromStdin: false, confirm: false, prompt: "Current password: " });
      process.stderr.write("Choose the new password.\n");
      newPassword = await prompt.obtainNewPassword({ fromStdin: false, check: (pw) => checkPassword(pw, user) });
      if (!endSessions) endSessions = await prompt.promptYesNo("End your other sessions and revoke their tickets?");
    }
    const r = await changePassword({ addr: t.addr, user, trust: { acceptNew: Boolean(a["accept-new-host"]) } }, oldPassword, newPassword, endSessions);
    process.stderr.write(`password changed for ${user} at ${t.addr.id}; the key here is re-sealed under it\n`);
    if (endSessions) process.stderr.write(`${r.ended} other session${r.ended === 1 ? "" : "s"} ended, other tickets revoked\n`);
  },
});
