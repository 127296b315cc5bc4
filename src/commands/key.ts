/**
 * `securechat key export|import` (PROTOCOL.md Appendix A.7): a backup of
 * this machine's device key, sealed under a passphrase of its own, for the
 * day the machine is lost. The key is never in clear outside this process.
 */
import type { ArgsDef } from "citty";
import { args, command } from "./define.ts";
import { CliError, EXIT } from "./exit.ts";

const twoLines = {
  "password-stdin": { type: "boolean", description: "Read the two secrets from the first two lines of stdin (see above)" },
} as const satisfies ArgsDef;

/** Two secrets, from the first two lines of stdin. */
async function stdinPair(what: string): Promise<[string, string]> {
  const [{ StdinLines }, { SecureChatError }] = await Promise.all([import("../client/stdin.ts"), import("../errors.ts")]);
  const lines = new StdinLines();
  try {
    const first = (await lines.next()) ?? "";
    const second = (await lines.next()) ?? "";
    if (first === "" || second === "") throw new SecureChatError("password_stdin_empty", `--password-stdin: the first two lines of stdin must be ${what}`);
    return [first, second];
  } finally {
    lines.close();
  }
}

const exportCmd = command({
  meta: { name: "export", description: "Write a backup of this machine's key for USER, sealed under a new passphrase" },
  args: {
    file: { type: "positional", description: "The backup file to create (mode 0600; an existing file is never replaced)", required: true, valueHint: "FILE" },
    user: { type: "string", alias: ["u"], description: "User (default: user in config.toml)", valueHint: "NAME" },
    ...args.server,
    "password-stdin": { type: "boolean", description: "Read the account password, then the backup passphrase, from the first two lines of stdin" },
    ...args.debug,
  },
  examples: ["securechat key export alice-laptop.sckey -u alice", "printf '%s\\n%s\\n' \"$PW\" \"$BACKUP_PW\" | securechat key export alice.sckey --password-stdin"],
  async run({ args: a }) {
    const [{ openIdentity, checkUserName }, prompt, { target, userOrConfigured }, { checkPassword }, { sealKeyBackup, writeBackupFile }, { deviceId }, { wipe }] = await Promise.all([
      import("../client/account.ts"),
      import("../client/prompt.ts"),
      import("./defaults.ts"),
      import("../password.ts"),
      import("../client/keybackup.ts"),
      import("../fingerprint.ts"),
      import("../crypto/index.ts"),
    ]);
    const t = await target(a.server);
    const user = a.user ?? userOrConfigured(undefined, t, "securechat key export");
    checkUserName(user);
    let password: string;
    let passphrase: string;
    if (a["password-stdin"]) {
      [password, passphrase] = await stdinPair("the account password and the backup passphrase");
      await checkPassword(passphrase, user);
    } else {
      password = await prompt.obtainPassword({ fromStdin: false, confirm: false, prompt: `Password of ${user}: ` });
    }
    const { identity } = await openIdentity({ addr: t.addr, user, trust: { acceptNew: false } }, password);
    try {
      if (!a["password-stdin"]) {
        process.stderr.write("Choose the backup's passphrase (not your password: whoever has the file and it has your key).\n");
        passphrase = await prompt.obtainNewPassword({ fromStdin: false, check: (pw) => checkPassword(pw, user) });
      }
      const text = await sealKeyBackup(identity, user, t.addr.id, passphrase!);
      writeBackupFile(a.file, text);
      process.stderr.write(`wrote ${a.file} (mode 0600): the key of device ${deviceId(identity.publicKey)} of ${user} at ${t.addr.id}, sealed under the passphrase\nkeep it off this machine; "securechat key import ${a.file}" restores it\n`);
    } finally {
      wipe(identity.secretKey);
    }
  },
});

const importCmd = command({
  meta: { name: "import", description: "Restore a key backup on this machine (it becomes that device)" },
  args: {
    file: { type: "positional", description: "The backup file \"key export\" wrote", required: true, valueHint: "FILE" },
    force: { type: "boolean", description: "Replace a key this machine already has for that user and server" },
    ...twoLines,
    ...args.debug,
  },
  examples: ["securechat key import alice-laptop.sckey", "printf '%s\\n%s\\n' \"$BACKUP_PW\" \"$PW\" | securechat key import alice.sckey --password-stdin"],
  async run({ args: a }) {
    const [{ openKeyBackup, readBackupFile }, prompt, { hasIdentity, identityPath, saveIdentity }, { deviceId }, { wipe }] = await Promise.all([
      import("../client/keybackup.ts"),
      import("../client/prompt.ts"),
      import("../client/keystore.ts"),
      import("../fingerprint.ts"),
      import("../crypto/index.ts"),
    ]);
    const text = readBackupFile(a.file);
    let passphrase: string;
    let password: string | undefined;
    if (a["password-stdin"]) [passphrase, password] = await stdinPair("the backup passphrase and the account password");
    else passphrase = await prompt.obtainPassword({ fromStdin: false, confirm: false, prompt: "Backup passphrase: " });
    const { user, server, key } = await openKeyBackup(text, passphrase);
    try {
      if (hasIdentity(server, user) && !a.force) {
        throw new CliError(EXIT.FAILURE, `this machine already has a key for ${user} at ${server} (${identityPath(server, user)})`, [
          "pass --force to replace it (its own enrollment is then lost from this machine)",
        ]);
      }
      password ??= await prompt.obtainPassword({ fromStdin: false, confirm: false, prompt: `Password of ${user} at ${server}: ` });
      await saveIdentity(server, user, key, password);
      process.stderr.write(
        `restored device ${deviceId(key.publicKey)} of ${user} at ${server}, sealed here under the password\n` +
          `log in with "securechat login ${user} --server ${server}"; if the old machine may be in someone's hands, enroll a fresh key instead and revoke this one\n`,
      );
    } finally {
      wipe(key.secretKey);
    }
  },
});

export default command({
  meta: { name: "key", description: "Back up this machine's device key, or restore it: for a lost machine" },
  subCommands: { export: exportCmd, import: importCmd },
  examples: ["securechat key export ~/backup/alice.sckey -u alice", "securechat key import /media/usb/alice.sckey"],
  notes: [
    [
      "LOST OR STOLEN",
      [
        "The backup file holds your device key sealed under its own passphrase (argon2id, XChaCha20-Poly1305): keep it, and the passphrase, off the machine it came from.",
        "A lost laptop, with a backup: \"key import FILE\" on the new machine, then \"securechat login\": it is that device again. If the old machine may turn up in other hands, use the backup only to approve a fresh key: \"device add\" on the new machine; SECURECHAT_HOME=DIR securechat key import FILE, then SECURECHAT_HOME=DIR securechat device approve CODE; then \"device revoke\" the old device from the new one and delete DIR.",
        "A lost laptop without a backup: from another of your devices, \"device revoke\" it, and enroll the new machine with \"device add\".",
        "A stolen laptop: from another device, \"device list\" and \"device revoke ID\": its live sessions end at once and its key and tickets are refused; change your password (securechat passwd) if the thief may know it.",
      ],
    ],
    ["STDIN", ["With --password-stdin, export reads the account password, then the backup passphrase; import reads the backup passphrase, then the account password."]],
  ],
});
