/**
 * The chat core with what it stands on (docs/CLUSTER.md §1): the chat
 * (rooms, presence, flood control), the sessions' registry and requests
 * (`Core`), devices and read markers, over a journal and an account store.
 * A single node runs one in process behind its listener (server.ts); a
 * cluster node runs one only while it holds the writer lease, its edges
 * reaching it over the bus (node.ts). Nothing here listens or holds a socket.
 */
import type { Logger } from "../log.ts";
import type { Journal } from "../store/journal.ts";
import { type MarkerStore, WriteBehindMarkers } from "../store/markers.ts";
import type { Accounts } from "./accounts.ts";
import { Chat, type ChatOptions } from "./chat.ts";
import { Core, type CoreServer } from "./core.ts";
import { type DeviceOptions, Devices } from "./devices.ts";

export interface ChatCoreOptions {
  chat: ChatOptions;
  devices: DeviceOptions;
  /** The newest checkpoint witnesses cosigned (serve --witness), for `log_proof` `cosigned`. */
  cosigned?: () => { note: string; size: number } | null;
  log: Logger;
}

export class ChatCore implements CoreServer {
  readonly chat: Chat;
  /** The read markers (PROTOCOL.md §7.14): in memory for online users, written behind once a second. */
  readonly markers: WriteBehindMarkers;
  readonly devices: Devices;
  /** The sessions and their requests (core.ts). */
  readonly core: Core;
  readonly log: Logger;

  constructor(
    readonly opts: ChatCoreOptions,
    readonly journal: Journal,
    readonly accounts: Accounts,
    markerStore: MarkerStore,
  ) {
    this.log = opts.log;
    journal.watch?.((recording) => this.core.recordingChanged(recording));
    this.devices = new Devices(accounts.store, journal, opts.devices);
    this.markers = new WriteBehindMarkers(markerStore);
    const store = accounts.store;
    // A `dm` to a name: securechat.db answers at once; PostgreSQL later, and the request waits its turn for it (chat.ts).
    const isAccount = (user: string): boolean | Promise<boolean> => {
      const a = store.account(user);
      return a instanceof Promise ? a.then((x) => x !== null) : a !== null;
    };
    this.chat = new Chat(opts.chat, journal, Date.now, isAccount, this.markers);
    this.core = new Core(this);
  }

  /** Once a second or so: buckets that refilled, expired enrollments, read markers that moved. */
  sweep(now: number): void {
    this.chat.prune();
    this.devices.prune(now);
    void this.saveMarkers();
  }

  /** Writes the read markers that moved; a failure is logged, not fatal (they are a convenience: messages are shown again). */
  saveMarkers(): Promise<void> | void {
    const failed = (e: unknown) => this.log.warn("markers_not_saved", { error: e instanceof Error ? e.message : String(e) });
    try {
      const writing = this.markers.flush();
      if (writing) return writing.catch(failed);
    } catch (e) {
      failed(e);
    }
  }

  /** Stops recording (sessions closing after this are not) and closes the journal; the markers are written. */
  async stop(reason = "shutdown"): Promise<void> {
    this.core.journalClosed = true;
    this.journal.close?.(reason);
    await this.saveMarkers();
  }
}
