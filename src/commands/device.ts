/**
 * `securechat device add|approve|list|revoke` (PROTOCOL.md §7.11): more than
 * one machine per account, each with its own key. stdout carries only data
 * (the enrollment code, the list); everything said to the user is on stderr.
 */
import type { ArgsDef } from "citty";
import { args, command } from "./define.ts";
import { CliError, EXIT } from "./exit.ts";

const userArg = {
  user: { type: "string", alias: ["u"], description: "User (default: user in config.toml)", valueHint: "NAME" },
} as const satisfies ArgsDef;

/** The account a device command acts for: --user, else config.toml's user, else the one logged in at the server. */
async function account(a: { server?: string; user?: string; "accept-new-host"?: boolean }, needTicket: boolean) {
  const [{ checkUserName }, { target }, { pickUser }] = await Promise.all([import("../client/account.ts"), import("./defaults.ts"), import("../client/sessions.ts")]);
  const t = await target(a.server);
  let user: string;
  if (needTicket) user = pickUser(t.addr.id, a.user, t.config.user);
  else if (a.user !== undefined || t.config.user !== undefined) user = (a.user ?? t.config.user)!;
  else throw new CliError(EXIT.USAGE, "which user? pass --user NAME", [`or set user = "NAME" in ${t.config.path}`]);
  checkUserName(user);
  return { t, o: { addr: t.addr, user, trust: { acceptNew: Boolean(a["accept-new-host"]) } } };
}

/** A time as UTC to the minute: `12-03 13:40`. */
const when = (ms: number): string => new Date(ms).toISOString().slice(5, 16).replace("T", " ");

const add = command({
  meta: { name: "add", description: "Enroll this machine as a new device of your account: makes its own key, prints a code to approve" },
  args: {
    ...userArg,
    name: { type: "string", description: "A name for this device in \"device list\" (default: the host name)", valueHint: "NAME" },
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat device add -u alice --name 'work laptop'", "securechat device add -u alice -s chat.example:7447"],
  async run({ args: a }) {
    const [{ addDevice }, { obtainPassword }, { writeConfigIfAbsent }, { hostname }, { isoTime }, { DEVICE_NAME_MAX }, { hasControl }] = await Promise.all([
      import("../client/devices.ts"),
      import("../client/prompt.ts"),
      import("../client/config.ts"),
      import("node:os"),
      import("../time.ts"),
      import("../protocol/limits.ts"),
      import("../text.ts"),
    ]);
    const { t, o } = await account(a, false);
    const name = a.name ?? hostname().slice(0, DEVICE_NAME_MAX);
    if (name === "" || Buffer.byteLength(name) > DEVICE_NAME_MAX || hasControl(name)) {
      throw new CliError(EXIT.USAGE, `--name: a device name is 1-${DEVICE_NAME_MAX} bytes of text without control characters`);
    }
    const password = await obtainPassword({ fromStdin: Boolean(a["password-stdin"]), confirm: false });
    const r = await addDevice(o, password, name, (code, expires) => {
      process.stdout.write(`${code}\n`);
      process.stderr.write(
        `enrollment code for this device: ${code}\n` +
          `on a machine where ${o.user} is already set up, run:\n  securechat device approve ${code}\n` +
          `and check that it shows the same code; waiting for the approval until ${isoTime(expires)}...\n`,
      );
    });
    process.stderr.write(`this machine is now device ${r.id} of ${o.user} at ${o.addr.id}\n`);
    if (r.welcome?.ticket_expires) process.stderr.write(`logged in as ${o.user} until ${isoTime(r.welcome.ticket_expires)}\n`);
    const wrote = writeConfigIfAbsent(t.addr, o.user);
    if (wrote) process.stderr.write(`wrote ${wrote}: server = "${t.addr.id}", user = "${o.user}" (the defaults from now on)\n`);
  },
});

const approve = command({
  meta: { name: "approve", description: "Approve a new device from this one, by the code it shows (signs its key)" },
  args: {
    code: { type: "positional", description: "The code \"securechat device add\" printed on the new machine", required: true, valueHint: "CODE" },
    ...userArg,
    yes: { type: "boolean", alias: ["y"], description: "Approve without asking (the code must still match)" },
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat device approve 7K3M-Q9TX-2HBD", "securechat device approve 7k3mq9tx2hbd --password-stdin --yes < pw.txt"],
  async run({ args: a }) {
    const [{ approveDevice }, { obtainPassword, promptYesNo, stdinIsTerminal }, { normalizeDeviceCode }, { fingerprint }] = await Promise.all([
      import("../client/devices.ts"),
      import("../client/prompt.ts"),
      import("../protocol/devices.ts"),
      import("../fingerprint.ts"),
    ]);
    try {
      normalizeDeviceCode(a.code);
    } catch (e) {
      throw new CliError(EXIT.USAGE, (e as Error).message, ['copy the code exactly as "securechat device add" shows it on the new machine']);
    }
    if (!a.yes && (a["password-stdin"] || !stdinIsTerminal())) {
      throw new CliError(EXIT.USAGE, "no terminal to confirm the approval on", ["pass --yes to approve the device whose code matches without asking"]);
    }
    const { o } = await account(a, false);
    const password = await obtainPassword({ fromStdin: Boolean(a["password-stdin"]), confirm: false });
    const added = await approveDevice(o, password, a.code, async (p) => {
      process.stderr.write(`device ${p.id} "${p.name}" asks to join ${o.user}: from ${p.source || "an unknown address"} at ${when(p.since)} UTC\ncode ${p.code}, key ${fingerprint(p.key)}\n`);
      return a.yes ? true : promptYesNo("Approve it?");
    });
    process.stderr.write(`approved: device ${added.id} of ${o.user} can log in now\n`);
  },
});

const list = command({
  meta: { name: "list", description: "List your devices and the enrollments waiting for approval" },
  args: { ...userArg, ...args.server, json: { type: "boolean", description: "Print the server's answer as one JSON object" }, ...args.acceptNewHost, ...args.debug },
  examples: ["securechat device list", "securechat device list --json | jq '.devices[] | select(.revoked | not) | .id'"],
  async run({ args: a }) {
    const [{ listDevices }, { formatDevices }, { encodeMessage }] = await Promise.all([
      import("../client/devices.ts"),
      import("../client/devicelist.ts"),
      import("../protocol/messages.ts"),
    ]);
    const { o } = await account(a, true);
    const r = await listDevices(o);
    // As on the wire (PROTOCOL.md §7.11): keys in base64.
    process.stdout.write(a.json ? `${encodeMessage(r)}\n` : formatDevices(o.user, r));
  },
});

const revoke = command({
  meta: { name: "revoke", description: "Revoke a device (a stolen laptop): its sessions end at once, its key logs in no more" },
  args: {
    id: { type: "positional", description: "The device's ID, as \"device list\" shows it", required: true, valueHint: "ID" },
    ...userArg,
    ...args.server,
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: ["securechat device revoke 3fa2c1d09b7e", "securechat device revoke 3fa2c1d09b7e --password-stdin < pw.txt"],
  async run({ args: a }) {
    if (!/^[0-9a-f]{12}$/.test(a.id)) throw new CliError(EXIT.USAGE, `"${a.id}" is not a device ID (12 hex digits)`, ['run "securechat device list" to see the IDs']);
    const [{ revokeDevice }, { obtainPassword }] = await Promise.all([import("../client/devices.ts"), import("../client/prompt.ts")]);
    const { o } = await account(a, false);
    // The password, not the ticket: a stolen ticket must not revoke your other devices.
    const password = await obtainPassword({ fromStdin: Boolean(a["password-stdin"]), confirm: false });
    const r = await revokeDevice(o, password, a.id);
    process.stderr.write(`revoked device ${r.id}: ${r.ended} live session${r.ended === 1 ? "" : "s"} ended; its key and tickets are refused from now on\n`);
  },
});

export default command({
  meta: { name: "device", description: "Use your account from more than one machine: enroll, approve, list, revoke devices" },
  subCommands: { add, approve, list, revoke },
  examples: [
    "securechat device add -u alice --name 'work laptop'",
    "securechat device approve 7K3M-Q9TX-2HBD",
    "securechat device list",
    "securechat device revoke 3fa2c1d09b7e",
  ],
  notes: [
    [
      "HOW IT WORKS",
      [
        "Each machine has its own key; the server never sees a private key. \"device add\" makes this machine's key, seals it here under your password and asks the server to enroll it; unless the server enrolls on the password alone (serve --device-enroll password), a machine already enrolled must approve it: \"device approve CODE\" finds the waiting key whose code is CODE, computed there from the key itself, and signs it.",
        "A stolen laptop: from another of your devices, \"device list\", then \"device revoke ID\": its live sessions end at once and its key and tickets are refused. Change your password too (securechat passwd) if the thief may know it. See also \"securechat key --help\".",
      ],
    ],
  ],
});
