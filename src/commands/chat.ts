import { DEFAULT_TRANSCRIPT_MAX, TRANSCRIPT_LINE_MAX } from "../client/transcriptfile.ts";
import { args, command } from "./define.ts";
import { CliError, EXIT } from "./exit.ts";
import { parseInteger, parseRoomName, witnessPolicy } from "./values.ts";
import { repeatable, repeated } from "./argv.ts";

export default command({
  meta: { name: "chat", description: "Chat in rooms and direct messages (interactive, or scripted from a pipe)" },
  args: {
    user: { type: "string", alias: ["u"], description: "User to chat as (default: user in config.toml, else the only user logged in to this server)", valueHint: "NAME" },
    ...args.server,
    room: { type: "string", alias: ["r"], description: "Room to join first (then the other rooms you are in)", valueHint: "NAME", default: "general" },
    json: { type: "boolean", description: "One JSON object per event on stdout (default when stdout is not a terminal)" },
    history: {
      type: "boolean",
      default: true,
      description: "On joining, show what you missed since you last read the room (its recent messages the first time)",
      negativeDescription: "Show none of the room's past and join no other room: only what is said from now on",
    },
    "since-seq": { type: "string", description: "Show only the messages of --room after its seq N (a bot resuming where it stopped)", valueHint: "N" },
    reconnect: {
      type: "boolean",
      default: true,
      description: "Reconnect and resume every room when the connection drops or the server restarts",
      negativeDescription: "Exit 1 when the connection is lost instead",
    },
    transcript: { type: "string", description: "Append your own view (sent, received, acks, signed receipts) as JSON lines to FILE", valueHint: "FILE" },
    "transcript-max": {
      type: "string",
      description: `Never let the --transcript file grow past BYTES: stop writing it, say so, exit 1 at the end (default ${DEFAULT_TRANSCRIPT_MAX}, 1 GiB)`,
      valueHint: "BYTES",
    },
    witness: repeatable({ type: "string", valueHint: "VKEY", description: "Require the server's log to be cosigned by this witness (its vkey, as transcript witness prints it); give it again for more. Exit 6 without the quorum" }),
    "witness-quorum": { type: "string", valueHint: "K", description: "How many of the --witness must have cosigned (default: all)" },
    ...args.passwordStdin,
    ...args.acceptNewHost,
    ...args.debug,
  },
  examples: [
    "securechat chat",
    "securechat chat -u alice -r ops -s chat.example:7447",
    "printf 'hello\\nbye\\n' | securechat chat --user bot",
    "securechat chat --user bot --json < /dev/null | jq -c 'select(.type==\"message\") | {from, text}'",
    "securechat chat --user bot --no-history < /dev/null | jq -c 'select(.type==\"message\")'",
    "securechat chat --witness \"$(cat witness.vkey)\" --witness-quorum 1",
  ],
  async run({ args: a }) {
    // Every flag is checked before anything touches the disk or the network:
    // a bad one leaves $SECURECHAT_HOME and the --transcript file as they were.
    const [{ checkUserName }, { target }] = await Promise.all([import("../client/account.ts"), import("./defaults.ts")]);
    const t = await target(a.server);
    const addr = t.addr;
    const user = a.user ?? t.config.user;
    if (user !== undefined) checkUserName(user);
    const room = parseRoomName("--room", a.room);
    if (a.transcript === "") throw new CliError(EXIT.USAGE, "--transcript needs a file name, not an empty one");
    const max = a["transcript-max"];
    if (max !== undefined && a.transcript === undefined) throw new CliError(EXIT.USAGE, "--transcript-max needs --transcript FILE");
    const transcriptMax = max === undefined ? undefined : parseInteger("--transcript-max", max, TRANSCRIPT_LINE_MAX, Number.MAX_SAFE_INTEGER);
    const since = a["since-seq"];
    if (since !== undefined && a.history === false) throw new CliError(EXIT.USAGE, "--since-seq and --no-history contradict each other: choose one");
    const history = since !== undefined ? { since: parseInteger("--since-seq", since, 0, Number.MAX_SAFE_INTEGER) } : a.history === false ? ("none" as const) : ("all" as const);
    const witnesses = await witnessPolicy(repeated(a.witness), a["witness-quorum"]);
    const { runChat } = await import("../client/chatcli.ts");
    return runChat({
      addr,
      user,
      room,
      json: Boolean(a.json),
      transcript: a.transcript,
      transcriptMax,
      passwordStdin: Boolean(a["password-stdin"]),
      acceptNewHost: Boolean(a["accept-new-host"]),
      history,
      reconnect: a.reconnect !== false,
      witnesses,
    });
  },
});
