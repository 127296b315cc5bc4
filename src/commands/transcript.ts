import { args, command } from "./define.ts";
import { notImplemented } from "./pending.ts";

const verify = command({
  meta: { name: "verify", description: "Check a transcript's hash chain and signed checkpoints (exit 5 on failure)" },
  args: {
    path: { type: "positional", description: "Transcript file or directory", required: true },
    "host-key": { type: "string", description: "The server's public host key (base64 or SHA256: fingerprint)", valueHint: "KEY" },
    ...args.debug,
  },
  examples: ["securechat transcript verify /var/lib/securechat/transcript --host-key SHA256:..."],
  run: () => notImplemented("transcript verify", 5),
});

const exportCmd = command({
  meta: { name: "export", description: "Print transcript entries as JSON lines, verified as they are read" },
  args: {
    ...args.data,
    since: { type: "string", description: "Only entries at or after this time (ISO 8601)", valueHint: "TIME" },
    ...args.debug,
  },
  examples: ["securechat transcript export --since 2026-11-01 | jq -c 'select(.type==\"message\")'"],
  run: () => notImplemented("transcript export", 5),
});

const follow = command({
  meta: { name: "follow", description: "Like tail -f: print new transcript entries as JSON lines as they are written" },
  args: { ...args.data, ...args.debug },
  examples: ["securechat transcript follow --data /var/lib/securechat | jq ."],
  run: () => notImplemented("transcript follow", 5),
});

export default command({
  meta: { name: "transcript", description: "Verify, export and follow the server's tamper-evident transcript" },
  subCommands: { verify, export: exportCmd, follow },
  examples: ["securechat transcript verify ./data/transcript", "securechat transcript export --data ./data | jq ."],
});
