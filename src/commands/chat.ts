import { args, command } from "./define.ts";
import { notImplemented } from "./pending.ts";

export default command({
  meta: { name: "chat", description: "Chat in rooms and direct messages (interactive, or scripted from a pipe)" },
  args: {
    user: { type: "string", description: "User to chat as (default: the only logged-in user)", valueHint: "NAME" },
    ...args.server,
    room: { type: "string", description: "Room to join first", valueHint: "NAME", default: "general" },
    json: { type: "boolean", description: "One JSON object per event on stdout (default when stdout is not a terminal)" },
    ...args.debug,
  },
  examples: ["securechat chat --user alice", "printf 'hello\\nbye\\n' | securechat chat --user bot --json | jq -c ."],
  run: () => notImplemented("chat", 4),
});
