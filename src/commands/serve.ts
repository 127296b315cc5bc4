import { CliError, EXIT } from "./exit.ts";
import { args, command } from "./define.ts";
import { parseDuration, parseInteger } from "./values.ts";

export default command({
  meta: { name: "serve", description: "Run a securechat server" },
  args: {
    host: { type: "string", valueHint: "ADDR", description: "Address to listen on", default: "127.0.0.1" },
    port: { type: "string", valueHint: "PORT", description: "TCP port to listen on (0: any free port)", default: "7447" },
    ...args.data,
    "ticket-ttl": { type: "string", valueHint: "DURATION", description: "How long a login ticket lasts (e.g. 30m, 8h, 1d)", default: "8h" },
    "handshake-timeout": { type: "string", valueHint: "DURATION", description: "Handshake and login must finish within this", default: "10s" },
    "max-startups": { type: "string", valueHint: "START:RATE:FULL", description: "Random early drop of unauthenticated connections, start:rate:full (as OpenSSH)", default: "10:30:100" },
    "max-auth-tries": { type: "string", valueHint: "N", description: "Failed logins allowed per connection", default: "6" },
    "rekey-after": { type: "string", description: "Records per key before each direction rekeys", valueHint: "N" },
    history: { type: "string", valueHint: "N", description: "Recent messages a joining member is shown", default: "50" },
    "history-memory": { type: "string", valueHint: "BYTES", description: "Room history held in memory (estimated); the least recently used rooms' is read back from DATA/history.db", default: "16777216" },
    "flood-rate": { type: "string", valueHint: "N", description: "Messages per second a user may send, sustained", default: "10" },
    "flood-burst": { type: "string", valueHint: "N", description: "Messages a user may send at once after a pause", default: "30" },
    "idle-timeout": { type: "string", valueHint: "DURATION", description: "Ping a silent client after this; drop it after twice this", default: "60s" },
    "max-send-buffer": { type: "string", valueHint: "BYTES", description: "Bytes queued for one client before it is dropped as too slow", default: "1048576" },
    fsync: { type: "enum", options: ["always", "batch", "off"], description: "When an acknowledged message is on disk: each fsynced, group-committed (at most one fsync per ms), or left to the OS", default: "batch" },
    "checkpoint-every": { type: "string", valueHint: "N", description: "Sign a transcript checkpoint every N entries", default: "1000" },
    "checkpoint-interval": { type: "string", valueHint: "DURATION", description: "…and at least this often while there are new entries", default: "60s" },
    "rotate-size": { type: "string", valueHint: "BYTES", description: "Start a new transcript file past this size (and every UTC day)", default: "67108864" },
    "auditor-key": { type: "string", valueHint: "PUB", description: "Seal message bodies in the transcript to this auditor key (from transcript keygen)" },
    json: { type: "boolean", description: "Log JSON lines instead of text" },
    ...args.debug,
  },
  examples: [
    "securechat serve",
    "securechat serve --host 0.0.0.0 --port 7447 --data /var/lib/securechat",
    "securechat serve --auditor-key \"$(cat auditor.pub)\" --fsync always",
    "securechat serve --port 0 --json | jq -c 'select(.event==\"login_failed\")'",
  ],
  async run({ args: a }) {
    const [{ ChatServer, DEFAULT_SERVER_OPTIONS }, { parseStartups }, log, { serverData }, { DEFAULT_REKEY_BYTES, MAX_REKEY_RECORDS }] = await Promise.all([
      import("../server/server.ts"),
      import("../server/limits.ts"),
      import("../server/log.ts"),
      import("../paths.ts"),
      import("../protocol/limits.ts"),
    ]);
    const port = parseInteger("--port", a.port, 0, 65535);
    const rekeyRecords = a["rekey-after"] === undefined ? DEFAULT_SERVER_OPTIONS.rekey.records : parseInteger("--rekey-after", a["rekey-after"], 1, MAX_REKEY_RECORDS);
    let startups;
    try {
      startups = parseStartups(a["max-startups"]);
    } catch (e) {
      throw new CliError(EXIT.USAGE, (e as Error).message);
    }
    const logger = a.json ? log.jsonLogger() : await log.textLogger();
    const dataDir = serverData(a.data);
    process.umask(0o077);
    const [{ TranscriptJournal }, { DEFAULT_WRITER }, { parseAuditorPublic }, { loadOrCreateHostKey }, { join }, { VERSION }] = await Promise.all([
      import("../transcript/journal.ts"),
      import("../transcript/writer.ts"),
      import("../transcript/keys.ts"),
      import("../server/hostkey.ts"),
      import("node:path"),
      import("../cli.ts"),
    ]);
    let auditorKey: Uint8Array | undefined;
    if (a["auditor-key"] !== undefined) {
      try {
        auditorKey = parseAuditorPublic(a["auditor-key"]);
      } catch (e) {
        throw new CliError(EXIT.USAGE, `--auditor-key: ${(e as Error).message}`, ["pass the line printed by \"securechat transcript keygen\", or a file holding it"]);
      }
    }
    const history = parseInteger("--history", a.history, 0, 1000);
    // The transcript signs with the host key, so it is loaded (or made, on first start) here.
    const hostKey = loadOrCreateHostKey(dataDir);
    let journal: ReturnType<typeof TranscriptJournal.open>;
    try {
      journal = TranscriptJournal.open({
        ...DEFAULT_WRITER,
        dir: join(dataDir, "transcript"),
        hostKey: hostKey.key,
        fsync: a.fsync as "always" | "batch" | "off",
        checkpointEvery: parseInteger("--checkpoint-every", a["checkpoint-every"], 1, 10_000_000),
        checkpointIntervalMs: parseDuration("--checkpoint-interval", a["checkpoint-interval"]),
        rotateBytes: parseInteger("--rotate-size", a["rotate-size"], 4096, 2 ** 40),
        auditorKey,
        version: VERSION,
        history,
        historyMemory: parseInteger("--history-memory", a["history-memory"], 0, 2 ** 40),
        log: logger,
      });
    } catch (e) {
      if ((e as { code?: string }).code === "transcript_corrupt") throw new CliError(EXIT.TRANSCRIPT, (e as Error).message);
      throw e;
    }
    let server: Awaited<ReturnType<typeof ChatServer.start>>;
    try {
      server = await ChatServer.start({
        host: a.host,
        port,
        dataDir,
        ticketTtlMs: parseDuration("--ticket-ttl", a["ticket-ttl"], 365 * 86_400_000),
        handshakeTimeoutMs: parseDuration("--handshake-timeout", a["handshake-timeout"]),
        startups,
        maxAuthTries: parseInteger("--max-auth-tries", a["max-auth-tries"], 1, 1000),
        rekey: { records: rekeyRecords, bytes: DEFAULT_REKEY_BYTES },
        chat: {
          ...DEFAULT_SERVER_OPTIONS.chat,
          history,
          flood: { rate: parseInteger("--flood-rate", a["flood-rate"], 1, 1_000_000), burst: parseInteger("--flood-burst", a["flood-burst"], 1, 1_000_000) },
        },
        idleMs: parseDuration("--idle-timeout", a["idle-timeout"], 2 ** 30),
        maxSendBuffer: parseInteger("--max-send-buffer", a["max-send-buffer"], 64 * 1024, 1024 ** 3),
        journal,
        log: logger,
      });
    } catch (e) {
      journal.close("failed to start");
      const code = (e as { code?: string }).code;
      if (code === "EADDRINUSE") throw new CliError(EXIT.FAILURE, `cannot listen on ${a.host}:${port}: the address is in use`, ["stop the other server or pick another --port"]);
      if (code === "EACCES") throw new CliError(EXIT.FAILURE, `cannot listen on ${a.host}:${port}: permission denied`);
      throw e;
    }
    logger.info(hostKey.created ? "host_key_created" : "host_key_loaded", { fingerprint: server.fingerprint });
    logger.info("listening", { address: `${a.host}:${server.port}`, fingerprint: server.fingerprint, data: dataDir });
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info("shutdown", { signal });
        void server.stop().then(resolve);
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
  },
});
