import { CliError, EXIT } from "./exit.ts";
import { args, command } from "./define.ts";
import { repeatable, repeated } from "./argv.ts";
import { parseDuration, parseInteger } from "./values.ts";

export default command({
  meta: { name: "serve", description: "Run a securechat server" },
  args: {
    host: { type: "string", valueHint: "ADDR", description: "Address to listen on", default: "127.0.0.1" },
    port: { type: "string", valueHint: "PORT", description: "TCP port to listen on (0: any free port)", default: "7447" },
    ...args.data,
    "host-key": { type: "string", valueHint: "FILE", description: "The host key file (default: host_key in --data, made on first start). The nodes of a cluster all give the same FILE, kept 0600; a FILE given here is never made" },
    "ticket-ttl": { type: "string", valueHint: "DURATION", description: "How long a login ticket lasts (e.g. 30m, 8h, 1d)", default: "8h" },
    "session-max": { type: "string", valueHint: "DURATION", description: "The longest a session lasts (one opened with a ticket also ends when the ticket does)", default: "24h" },
    "handshake-timeout": { type: "string", valueHint: "DURATION", description: "Handshake and login must finish within this", default: "10s" },
    "max-startups": { type: "string", valueHint: "START:RATE:FULL", description: "Random early drop of unauthenticated connections, start:rate:full (as OpenSSH)", default: "10:30:100" },
    "max-auth-tries": { type: "string", valueHint: "N", description: "Failed logins allowed per connection", default: "6" },
    "max-connections-per-address": { type: "string", valueHint: "N", description: "Connections open at once from one IPv4 address or IPv6 /64", default: "64" },
    "max-connections-per-user": { type: "string", valueHint: "N", description: "Logged-in connections one user may have at once", default: "16" },
    "login-rate": { type: "string", valueHint: "N", description: "Logins per second per address, and per user, sustained", default: "2" },
    "login-burst": { type: "string", valueHint: "N", description: "Logins per address, and per user, at once after a pause", default: "30" },
    "rekey-after": { type: "string", description: "Records per key before each direction rekeys", valueHint: "N" },
    history: { type: "string", valueHint: "N", description: "Recent messages a joining member is shown", default: "50" },
    "history-keep": { type: "string", valueHint: "N", description: "Messages kept per room in DATA/history.db for members catching up after a disconnect (at least --history)", default: "1000" },
    "history-memory": { type: "string", valueHint: "BYTES", description: "Room history held in memory (estimated); the least recently used rooms' is read back from DATA/history.db", default: "16777216" },
    "flood-rate": { type: "string", valueHint: "N", description: "Messages (say, dm) per second a user may send, sustained", default: "10" },
    "flood-burst": { type: "string", valueHint: "N", description: "Messages a user may send at once after a pause", default: "30" },
    "request-rate": { type: "string", valueHint: "N", description: "Other requests (join, leave, who, rooms, history, ping) per second per user, sustained", default: "5" },
    "request-burst": { type: "string", valueHint: "N", description: "Other requests a user may send at once after a pause", default: "40" },
    "max-rooms-per-user": { type: "string", valueHint: "N", description: "Rooms one user may be in across its connections (so also rooms it can create)", default: "64" },
    "dm-retention": { type: "string", valueHint: "DURATION", description: "How long direct messages are kept, for delivery to users who were offline and for /history @USER", default: "30d" },
    "max-stored-dms": { type: "string", valueHint: "N", description: "Direct messages stored for one offline user, not yet delivered; past it a dm to them is refused", default: "1000" },
    // Room moderation (PROTOCOL.md §7.9).
    "max-rooms-owned": { type: "string", valueHint: "N", description: "Persistent rooms (with a topic, ops, modes, bans...) one user may own", default: "10" },
    "max-persistent-rooms": { type: "string", valueHint: "N", description: "Persistent rooms the server keeps, in all", default: "1000" },
    "edit-window": { type: "string", valueHint: "DURATION", description: "How long after a message its author may /edit or /delete it; 0: never", default: "15m" },
    "idle-timeout": { type: "string", valueHint: "DURATION", description: "Ping a silent client after this; drop it after twice this", default: "60s" },
    "max-send-buffer": { type: "string", valueHint: "BYTES", description: "Bytes queued for one client before it is dropped as too slow", default: "1048576" },
    fsync: { type: "enum", options: ["always", "batch", "off"], description: "When an acknowledged message is on disk: each fsynced, group-committed (at most one fsync per ms), or left to the OS", default: "batch" },
    "checkpoint-every": { type: "string", valueHint: "N", description: "Sign a transcript checkpoint every N entries", default: "1000" },
    "checkpoint-interval": { type: "string", valueHint: "DURATION", description: "…and at least this often while there are new entries", default: "60s" },
    "rotate-size": { type: "string", valueHint: "BYTES", description: "Start a new transcript file past this size (and every UTC day)", default: "67108864" },
    "auditor-key": { type: "string", valueHint: "PUB", description: "Seal message bodies in the transcript to this auditor key (from transcript keygen)" },
    admin: repeatable({ type: "string", valueHint: "NAME", description: "A server administrator: this account may lock and unlock accounts and end their sessions (securechat admin); give it again for more. The account must exist" }),
    // Devices (PROTOCOL.md §7.11).
    "device-enroll": { type: "enum", options: ["approve", "password"], description: "How a new machine's key is enrolled: approved by an enrolled device, or by the password alone", default: "approve" },
    "max-devices": { type: "string", valueHint: "N", description: "Active device keys per account", default: "16" },
    "log-origin": { type: "string", valueHint: "NAME", description: "The name the transcript's checkpoints are signed under (default: securechat/ and 16 hex digits of the host key's hash)" },
    // Witnesses (TRANSCRIPT.md §4.5).
    witness: repeatable({ type: "string", valueHint: "URL=VKEY", description: "Submit each new checkpoint to this witness (c2sp.org/tlog-witness) and keep its cosignatures in DATA/cosigned.checkpoint (a cluster: in PostgreSQL): its URL, =, its vkey (as transcript witness prints it). Give it again for more (at most 16)" }),
    "witness-quorum": { type: "string", valueHint: "K", description: "Cosignatures a checkpoint needs (default: every --witness)" },
    "witness-grace": { type: "string", valueHint: "DURATION", description: "Log witness_quorum_missing when the newest checkpoint has lacked its quorum this long", default: "60s" },
    // A cluster of nodes (PostgreSQL + Redis): serve runs a node (docs/CLUSTER.md); --check checks them.
    database: { type: "string", valueHint: "URL", description: "PostgreSQL for a cluster of nodes (postgres://USER:PASSWORD@HOST:5432/DB); prefer $SECURECHAT_DATABASE_URL, since argv is visible to ps. Only with --redis: serve runs a cluster node" },
    redis: { type: "string", valueHint: "URL", description: "Redis for a cluster of nodes (redis://:PASSWORD@HOST:6379); prefer $SECURECHAT_REDIS_URL, since argv is visible to ps. Only with --database: serve runs a cluster node" },
    json: { type: "boolean", description: "Log JSON lines instead of text (with --check: one JSON object per check)" },
    check: { type: "boolean", description: "Check these flags, the data directory, the address, the transcript, the witnesses and the admins, then exit without starting: a line per check (ok, warn, FAIL); exit 1 if one failed. Writes nothing" },
    ...args.debug,
  },
  examples: [
    "securechat serve",
    "securechat serve --host 0.0.0.0 --port 7447 --data /var/lib/securechat",
    "securechat serve --auditor-key \"$(cat auditor.pub)\" --fsync always",
    "securechat serve --port 0 --json | jq -c 'select(.event==\"login_failed\")'",
    "securechat serve --admin root --admin ops",
    "securechat serve --check --data /var/lib/securechat --port 7447",
    "SECURECHAT_DATABASE_URL=postgres://… SECURECHAT_REDIS_URL=redis://… securechat serve --check",
    "securechat serve --host 0.0.0.0 --data /var/lib/securechat --host-key /etc/securechat/host_key",
    "securechat serve --witness http://127.0.0.1:7448=\"$(cat witness.vkey)\" --witness-quorum 1",
  ],
  async run({ args: a }) {
    const [{ DEFAULT_SERVER_OPTIONS }, { parseStartups }, { DEFAULT_REKEY_BYTES, DEVICE_LIST_MAX, MAX_REKEY_RECORDS, USER_NAME_RE }, { parseAuditorPublic }, { VERSION }, { defaultOrigin, isOrigin }, { formatVerifierKey }] = await Promise.all([
      import("../server/server.ts"),
      import("../server/limits.ts"),
      import("../protocol/limits.ts"),
      import("../transcript/keys.ts"),
      import("../version.ts"),
      import("../transcript/format.ts"),
      import("../transcript/note.ts"),
    ]);
    // Every flag is checked before anything touches the disk or the network:
    // a bad one leaves the data directory as it was.
    const port = parseInteger("--port", a.port, 0, 65535);
    const rekeyRecords = a["rekey-after"] === undefined ? DEFAULT_SERVER_OPTIONS.rekey.records : parseInteger("--rekey-after", a["rekey-after"], 1, MAX_REKEY_RECORDS);
    let startups;
    try {
      startups = parseStartups(a["max-startups"]);
    } catch (e) {
      throw new CliError(EXIT.USAGE, (e as Error).message);
    }
    let auditorKey: Uint8Array | undefined;
    if (a["auditor-key"] !== undefined) {
      try {
        auditorKey = parseAuditorPublic(a["auditor-key"]);
      } catch (e) {
        throw new CliError(EXIT.USAGE, `--auditor-key: ${(e as Error).message}`, ["pass the line printed by \"securechat transcript keygen\", or a file holding it"]);
      }
    }
    const admins = new Set(repeated(a.admin));
    for (const name of admins) {
      if (!USER_NAME_RE.test(name)) throw new CliError(EXIT.USAGE, `--admin "${name}" is not a user name`, ["use the name of an account on this server: a lowercase letter, then 1-31 of a-z, 0-9, _ or -"]);
    }
    const history = parseInteger("--history", a.history, 0, 1000);
    const historyKeep = parseInteger("--history-keep", a["history-keep"], 0, 100_000);
    if (historyKeep < history) throw new CliError(EXIT.USAGE, `--history-keep ${historyKeep} is less than --history ${history}`, ["a room keeps at least what a join shows: raise --history-keep, or lower --history"]);
    const historyMemory = parseInteger("--history-memory", a["history-memory"], 0, 2 ** 40);
    const maxSendBuffer = parseInteger("--max-send-buffer", a["max-send-buffer"], 64 * 1024, 1024 ** 3);
    const rate = (flag: "flood" | "request" | "login") => ({
      rate: parseInteger(`--${flag}-rate`, a[`${flag}-rate`], 1, 1_000_000),
      burst: parseInteger(`--${flag}-burst`, a[`${flag}-burst`], 1, 1_000_000),
    });
    const writer = {
      fsync: a.fsync as "always" | "batch" | "off",
      checkpointEvery: parseInteger("--checkpoint-every", a["checkpoint-every"], 1, 10_000_000),
      checkpointIntervalMs: parseDuration("--checkpoint-interval", a["checkpoint-interval"]),
      rotateBytes: parseInteger("--rotate-size", a["rotate-size"], 4096, 2 ** 40),
      auditorKey,
      version: VERSION,
      origin: a["log-origin"],
    };
    if (writer.origin !== undefined && !isOrigin(writer.origin)) {
      throw new CliError(EXIT.USAGE, `--log-origin: "${writer.origin}" is not a log origin`, ["1 to 255 bytes with no spaces and no \"+\", such as chat.example.com/securechat"]);
    }
    // The key a signed-note tool checks the transcript's checkpoints with (TRANSCRIPT.md §4.1), on the listening line.
    const logVkey = (publicKey: Uint8Array): string => formatVerifierKey(writer.origin ?? defaultOrigin(publicKey), publicKey);
    const witnesses = await parseWitnesses(repeated(a.witness));
    const witnessQuorum = a["witness-quorum"] === undefined ? witnesses.length : parseInteger("--witness-quorum", a["witness-quorum"], 1, Math.max(1, witnesses.length));
    if (a["witness-quorum"] !== undefined && witnesses.length === 0) throw new CliError(EXIT.USAGE, "--witness-quorum needs --witness URL=VKEY", ["give each witness with its own --witness URL=VKEY"]);
    const witnessGraceMs = parseDuration("--witness-grace", a["witness-grace"]);
    const { engineEnv, engineUrls } = await import("./defaults.ts");
    const engines = engineUrls({ database: a.database, redis: a.redis }, engineEnv(process.env), (line) => void process.stderr.write(`${line}\n`));
    const options = {
      host: a.host,
      port,
      ticketTtlMs: parseDuration("--ticket-ttl", a["ticket-ttl"], 365 * 86_400_000),
      sessionMaxMs: parseDuration("--session-max", a["session-max"], 365 * 86_400_000),
      handshakeTimeoutMs: parseDuration("--handshake-timeout", a["handshake-timeout"]),
      startups,
      maxAuthTries: parseInteger("--max-auth-tries", a["max-auth-tries"], 1, 1000),
      maxConnectionsPerAddress: parseInteger("--max-connections-per-address", a["max-connections-per-address"], 1, 1_000_000),
      maxConnectionsPerUser: parseInteger("--max-connections-per-user", a["max-connections-per-user"], 1, 1_000_000),
      logins: rate("login"),
      rekey: { records: rekeyRecords, bytes: DEFAULT_REKEY_BYTES },
      chat: {
        ...DEFAULT_SERVER_OPTIONS.chat,
        history,
        // One answer's history stays well inside the send buffer (PROTOCOL.md §7.3).
        historyBytes: maxSendBuffer / 4,
        flood: rate("flood"),
        requests: rate("request"),
        maxRoomsPerUser: parseInteger("--max-rooms-per-user", a["max-rooms-per-user"], 1, 1_000_000),
        dmRetentionMs: parseDuration("--dm-retention", a["dm-retention"], 3650 * 86_400_000),
        maxStoredDms: parseInteger("--max-stored-dms", a["max-stored-dms"], 1, 1_000_000),
        admins,
        maxRoomsOwned: parseInteger("--max-rooms-owned", a["max-rooms-owned"], 0, 1_000_000),
        maxPersistentRooms: parseInteger("--max-persistent-rooms", a["max-persistent-rooms"], 0, 1_000_000),
        editWindowMs: a["edit-window"].trim() === "0" ? 0 : parseDuration("--edit-window", a["edit-window"], 7 * 86_400_000),
      },
      idleMs: parseDuration("--idle-timeout", a["idle-timeout"], 2 ** 30),
      maxSendBuffer,
      devices: {
        ...DEFAULT_SERVER_OPTIONS.devices,
        enroll: a["device-enroll"] === "password" ? ("password" as const) : ("approve" as const),
        // A `devices` answer lists at most DEVICE_LIST_MAX, active and revoked.
        maxActive: parseInteger("--max-devices", a["max-devices"], 1, DEVICE_LIST_MAX),
      },
    };

    if (a["host-key"] === "") throw new CliError(EXIT.USAGE, "--host-key needs a file name, not an empty one");
    const [{ ChatServer }, log, { serverData }, { TranscriptJournal }, { DEFAULT_WRITER }, { loadOrCreateHostKey, hostKeySource, requireGivenHostKey }, { DataLock }, { fingerprint }, { join }] = await Promise.all([
      import("../server/server.ts"),
      import("../server/log.ts"),
      import("../paths.ts"),
      import("../transcript/journal.ts"),
      import("../transcript/writer.ts"),
      import("../server/hostkey.ts"),
      import("../store/lock.ts"),
      import("../fingerprint.ts"),
      import("node:path"),
    ]);
    const dataDir = serverData(a.data);
    if (a.check) {
      const { runChecks, formatCheck } = await import("./servecheck.ts");
      const { CLUSTER_COMPONENTS } = await import("../store/pg/components.ts");
      const results = await runChecks({
        dataDir, hostKeyFile: a["host-key"], host: a.host, port, rotateBytes: writer.rotateBytes, admins, witnesses, tryListen, listenFailure: (e) => listenFailure(e, a.host, port),
        engines: engines ? { ...engines, components: CLUSTER_COMPONENTS } : undefined,
      });
      for (const r of results) process.stdout.write(`${a.json ? JSON.stringify(r) : formatCheck(r)}\n`);
      const failed = results.filter((r) => r.status === "FAIL").length;
      if (failed > 0) throw new CliError(EXIT.FAILURE, `serve --check: ${failed} of ${results.length} checks failed`);
      return;
    }
    process.umask(0o077);
    if (engines) {
      await serveNode({
        engines,
        dataDir,
        hostKeyFile: a["host-key"],
        json: a.json === true,
        address: { host: a.host, port },
        options,
        vkey: logVkey,
        journal: { ...DEFAULT_WRITER, ...writer, history, historyKeep, historyMemory },
        witnesses: { targets: witnesses, quorum: witnessQuorum, graceMs: witnessGraceMs },
      });
      return;
    }
    // A --host-key FILE that is not there is said before anything is touched.
    requireGivenHostKey(hostKeySource(dataDir, a["host-key"]));
    // --host and --port are tried before the data directory is touched: a
    // mistake there leaves it as it was. (A port in use may be the server that
    // holds this data directory: the lock's message, naming it, comes first.)
    const unlistenable = tryListen(a.host, port);
    if (unlistenable && errno(unlistenable) !== "EADDRINUSE") throw listenFailure(unlistenable, a.host, port);
    // One server per data directory, held until this process ends (store/lock.ts):
    // taken before the host key, the transcript or a database is touched.
    let lock: ReturnType<typeof DataLock.acquire>;
    try {
      lock = DataLock.acquire(dataDir);
    } catch (e) {
      throw dataDirFailure(e, dataDir);
    }
    if (unlistenable) {
      lock.release();
      throw listenFailure(unlistenable, a.host, port);
    }
    const logger = a.json ? log.jsonLogger() : log.textLogger();
    let server: Awaited<ReturnType<typeof ChatServer.start>>;
    let hostKey: ReturnType<typeof loadOrCreateHostKey>;
    let submitter: import("../server/witnesses.ts").WitnessSubmitter | undefined;
    try {
      // The transcript signs with the host key, so it is loaded (or made, on first
      // start) here, once: the server is handed this copy.
      hostKey = loadOrCreateHostKey(dataDir, a["host-key"]);
      let journal: ReturnType<typeof TranscriptJournal.open>;
      try {
        journal = TranscriptJournal.open({ ...DEFAULT_WRITER, ...writer, dir: join(dataDir, "transcript"), hostKey: hostKey.key, history, historyKeep, historyMemory, log: logger, lock });
      } catch (e) {
        if ((e as { code?: string }).code === "transcript_corrupt") throw new CliError(EXIT.TRANSCRIPT, (e as Error).message);
        throw e;
      }
      if (witnesses.length > 0) {
        const { WitnessSubmitter } = await import("../server/witnesses.ts");
        submitter = new WitnessSubmitter({ dataDir, witnesses, quorum: witnessQuorum, graceMs: witnessGraceMs, log: logger, journal });
      }
      try {
        server = await ChatServer.start({ ...options, dataDir, journal, log: logger, cosigned: submitter ? () => submitter!.kept : undefined }, hostKey);
      } catch (e) {
        submitter?.close();
        journal.close("failed to start");
        throw listenFailure(e, a.host, port);
      }
    } catch (e) {
      lock.release();
      throw e;
    }
    logger.info(hostKey.created ? "host_key_created" : "host_key_loaded", { fingerprint: server.fingerprint });
    logger.info("transcript", {
      dir: join(dataDir, "transcript"),
      sealing: auditorKey ? "on" : "off",
      auditor_key: auditorKey ? fingerprint(auditorKey) : undefined,
      fsync: writer.fsync,
      checkpoint_every: writer.checkpointEvery,
      checkpoint_interval_s: writer.checkpointIntervalMs / 1000,
    });
    logAdmins(logger, admins);
    // The key a signed-note tool checks the transcript's checkpoints with (TRANSCRIPT.md §4.1).
    const vkey = logVkey(hostKey.key.publicKey);
    if (witnesses.length > 0) logger.info("witnesses", { count: witnesses.length, quorum: witnessQuorum, urls: witnesses.map((w) => w.url).join(",") });
    logger.info("listening", { address: `${a.host}:${server.port}`, fingerprint: server.fingerprint, vkey, data: dataDir, pid: process.pid });
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info("shutdown", { signal });
        submitter?.close();
        void server.stop().then(resolve);
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
    lock.release();
  },
});

/**
 * `serve --database --redis`: a cluster node (docs/CLUSTER.md). The data
 * directory holds only the default host key (every node must share one:
 * --host-key FILE); the record is PostgreSQL. Runs until SIGINT/SIGTERM.
 */
async function serveNode(p: {
  engines: { database: string; redis: string };
  dataDir: string;
  hostKeyFile: string | undefined;
  json: boolean;
  address: { host: string; port: number };
  options: Omit<import("../server/server.ts").ServerOptions, "dataDir" | "log" | "journal" | "argon2Concurrency" | "argon2Queue" | "penalties" | "ticketPruneMs"> & Partial<import("../server/server.ts").ServerOptions>;
  journal: import("../server/node.ts").NodeOptions["journal"];
  /** The transcript's verifier key for the host key (the log's origin, signed-note form). */
  vkey: (publicKey: Uint8Array) => string;
  witnesses: NonNullable<import("../server/node.ts").NodeOptions["witnesses"]>;
}): Promise<void> {
  const [{ ClusterNode }, log, { loadOrCreateHostKey, hostKeySource }] = await Promise.all([import("../server/node.ts"), import("../server/log.ts"), import("../server/hostkey.ts")]);
  const logger = p.json ? log.jsonLogger() : log.textLogger();
  // The engines are checked as serve --check does, before the data directory or a key is touched.
  const [{ checkEngines, formatCheck }, { CLUSTER_COMPONENTS }] = await Promise.all([import("./servecheck.ts"), import("../store/pg/components.ts")]);
  const failed = (await checkEngines({ ...p.engines, components: CLUSTER_COMPONENTS })).filter((r) => r.status === "FAIL");
  if (failed.length > 0) throw new CliError(EXIT.FAILURE, `cannot start a cluster node:\n${failed.map(formatCheck).join("\n")}`);
  const src = hostKeySource(p.dataDir, p.hostKeyFile);
  const hostKey = loadOrCreateHostKey(p.dataDir, p.hostKeyFile);
  if (src.isDefault) {
    logger.warn("host_key_default", { path: src.path, effect: "every node of a cluster must present the same host key: give each node the same file with --host-key FILE" });
  }
  let node: import("../server/node.ts").ClusterNode;
  try {
    node = await ClusterNode.start({ databaseUrl: p.engines.database, redisUrl: p.engines.redis, server: { ...p.options, log: logger }, journal: p.journal, witnesses: p.witnesses }, hostKey);
  } catch (e) {
    throw listenFailure(e, p.address.host, p.address.port);
  }
  logger.info(hostKey.created ? "host_key_created" : "host_key_loaded", { fingerprint: node.edge.fingerprint });
  logAdmins(logger, p.options.chat.admins);
  const w = p.witnesses;
  // Only the core submits (the node holding the writer lease), the cosigned checkpoint kept in PostgreSQL.
  if (w.targets.length > 0) logger.info("witnesses", { count: w.targets.length, quorum: w.quorum, urls: w.targets.map((t) => t.url).join(","), kept: "log_cosigned" });
  logger.info("listening", { address: `${p.address.host}:${node.port}`, fingerprint: node.edge.fingerprint, vkey: p.vkey(hostKey.key.publicKey), node: node.node, pid: process.pid });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info("shutdown", { signal });
      void node.stop().then(resolve);
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}

/** The start log's `admins` line (serve --admin), on a single node and a cluster node alike: who may administer this server. */
function logAdmins(logger: import("../log.ts").Logger, admins: ReadonlySet<string>): void {
  logger.info("admins", { users: [...admins].sort().join(",") || undefined, count: admins.size });
}

/** `--witness URL=VKEY` values: an http(s) URL (the submission prefix), then the witness's cosigner vkey. */
async function parseWitnesses(values: string[]): Promise<import("../server/witnesses.ts").WitnessTarget[]> {
  const [{ parseCosignerKey }, { WITNESSES_MAX }] = await Promise.all([import("../transcript/cosignature.ts"), import("../server/witnesses.ts")]);
  if (values.length > WITNESSES_MAX) throw new CliError(EXIT.USAGE, `at most ${WITNESSES_MAX} --witness`, ["a quorum of a few independent witnesses is what counts"]);
  const seen = new Set<string>();
  return values.map((v) => {
    const eq = v.indexOf("=");
    const url = eq < 0 ? "" : v.slice(0, eq).replace(/\/+$/, "");
    const hint = ["pass --witness URL=VKEY: the witness's address (http://HOST:PORT) and the vkey its transcript witness start printed"];
    if (!/^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(url)) throw new CliError(EXIT.USAGE, `--witness "${v}": no http:// or https:// URL before the =`, hint);
    try {
      const verifier = parseCosignerKey(v.slice(eq + 1));
      const vkey = v.slice(eq + 1).trim();
      if (seen.has(vkey)) throw new CliError(EXIT.USAGE, `--witness: ${verifier.name} is given twice`, ["give each witness once"]);
      seen.add(vkey);
      return { url, vkey, verifier };
    } catch (e) {
      if (e instanceof CliError) throw e;
      throw new CliError(EXIT.USAGE, `--witness "${url}": ${(e as Error).message.replace(/^signed note: /, "")}`, hint);
    }
  });
}

const errno = (e: unknown): string | undefined => (e as { code?: unknown }).code as string | undefined;

/** Why listening on HOST:PORT fails now, or null if it works (the socket is closed again at once). */
function tryListen(hostname: string, port: number): unknown {
  try {
    Bun.listen({ hostname, port, socket: { data() {} } }).stop(true);
    return null;
  } catch (e) {
    return e;
  }
}

/** Why the data directory cannot be used, as one line and a hint; anything else unchanged. */
export function dataDirFailure(e: unknown, dir: string): unknown {
  const other = "pass --data DIR: a directory this user owns, or one that does not exist yet";
  switch (errno(e)) {
    case "data_locked": {
      const pid = (e as { detail?: { pid?: number } }).detail?.pid;
      return new CliError(EXIT.FAILURE, (e as Error).message, [
        pid === undefined ? "another server runs on it: stop it first, or pass another --data" : `stop that server first (kill ${pid}), or pass another --data`,
      ]);
    }
    case "EEXIST":
      return new CliError(EXIT.FAILURE, `cannot use ${dir} as the data directory: it is not a directory`, [other]);
    case "ENOTDIR":
      return new CliError(EXIT.FAILURE, `cannot use ${dir} as the data directory: a part of that path is not a directory`, [other]);
    case "EACCES":
    case "EPERM":
      return new CliError(EXIT.FAILURE, `cannot use ${dir} as the data directory: permission denied`, [other]);
    case "EROFS":
      return new CliError(EXIT.FAILURE, `cannot use ${dir} as the data directory: it is on a read-only file system`, [other]);
    case "ENOENT":
      return new CliError(EXIT.FAILURE, `cannot create ${dir}: a parent directory cannot be made there`, [other]);
    case "data_lock_failed":
      return new CliError(EXIT.FAILURE, (e as Error).message, [other]);
    default:
      return e;
  }
}

/** Why the server cannot listen on HOST:PORT, as one line and a hint; anything else unchanged. */
export function listenFailure(e: unknown, host: string, port: number): unknown {
  const where = `cannot listen on ${host.includes(":") ? `[${host}]` : host}:${port}`;
  const code = errno(e);
  if (code === "EADDRINUSE") return new CliError(EXIT.FAILURE, `${where}: the address is in use`, ["another program (perhaps another securechat serve) listens there: stop it, or pick another --port"]);
  if (code === "EACCES") return new CliError(EXIT.FAILURE, `${where}: permission denied`, ["ports below 1024 need privileges: pick --port 1024 or above"]);
  if (code === "EADDRNOTAVAIL") return new CliError(EXIT.FAILURE, `${where}: no interface of this machine has that address`, ["pass --host with one of this machine's addresses, 0.0.0.0 (all IPv4) or :: (all)"]);
  // Bun says only "Failed to listen at HOST" for a name that does not resolve.
  if (code === undefined && e instanceof Error && e.message.startsWith("Failed to listen")) {
    return new CliError(EXIT.FAILURE, `${where}: no such address here`, ["pass --host with one of this machine's addresses or a name that resolves to one"]);
  }
  return e;
}
