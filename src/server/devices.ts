/**
 * An account's devices (PROTOCOL.md §7.11): the Ed25519 keys that may sign
 * its password logins. The key given at `register` is the first; a new
 * machine makes its own and is enrolled with the password (`enroll`), by
 * the server's policy either at once or once an enrolled device signs its
 * key (`device_approve`). A device can be revoked (`device_revoke`): its
 * tickets are deleted and every session standing on it ends. Enrollments
 * and revocations are recorded in the transcript before they take effect.
 * The server only ever holds public keys.
 *
 * Waiting enrollments live in memory, at most DEVICE_PENDING_MAX per
 * account, each for `pendingTtlMs`: a restart forgets them, and the new
 * machine asks again. On a cluster they live in the shared account store
 * (`PendingDevices`, PostgreSQL) with the same bound: the new machine waits
 * on one node's edge while the approval is taken by the core, and the edge
 * lets it in once it sees its key among the account's active devices
 * (`watch`); the memory then holds only the edge's waiting connections.
 */
import { toBase64 } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { deviceId } from "../fingerprint.ts";
import { verifyEnrollment } from "../protocol/devices.ts";
import { DEVICE_LIST_MAX, DEVICE_PENDING_MAX } from "../protocol/limits.ts";
import type { Message } from "../protocol/messages.ts";
import type { AccountStore, PendingDevices } from "../store/accounts.ts";
import type { Journal } from "../store/journal.ts";

/** How a new device is enrolled: by an enrolled device's approval, or by the password alone. */
export type EnrollPolicy = "approve" | "password";

export interface DeviceOptions {
  enroll: EnrollPolicy;
  /** Active devices per account. */
  maxActive: number;
  /** How long an enrollment waits for approval. */
  pendingTtlMs: number;
}

export const DEFAULT_DEVICES: DeviceOptions = { enroll: "approve", maxActive: 16, pendingTtlMs: 10 * 60_000 };

/** An enrollment waiting for approval. */
export interface PendingEnrollment {
  readonly user: string;
  readonly key: Uint8Array;
  name: string;
  readonly source: string;
  readonly since: number;
  readonly expires: number;
  /** The new device's connection waiting for the approval, if it still does. */
  waiter: (() => void) | null;
}

/** Who asks, from a logged-in session. */
export interface DeviceRequester {
  readonly user: string;
  /** The session id in base64, as the transcript records it. */
  readonly session: string;
  /** The device the session stands on. */
  readonly device: Uint8Array | null;
}

type Notice = Message<"notice">;
const notice = (code: string, text: string): Notice => ({ type: "notice", code, text });

/** How often a cluster edge looks for its waiting enrollments among the active devices (Devices.watch). */
export const APPROVAL_POLL_MS = 250;
/** How long a cluster edge waits for the core to record an enrollment by password (under the handshake's 10 s). */
export const CORE_ENROLL_WAIT_MS = 5000;
/** Enrollments by password the core records per sweep at most. */
const SWEEP_ENROLLMENTS = 64;

export class Devices {
  /** The waiting enrollments (on a cluster: the ones this edge's connections wait on). */
  readonly #pending = new Map<string, PendingEnrollment[]>();
  /** Shared by the nodes of a cluster (the account store's), or none: then #pending is the record. */
  readonly #shared: PendingDevices | null;
  #sweeping = false;

  constructor(
    readonly store: AccountStore,
    /** Where enrollments and revocations are recorded before they take effect; null on a cluster's edge (the core records). */
    readonly journal: Pick<Journal, "recording" | "append"> | null,
    readonly opts: DeviceOptions,
  ) {
    this.#shared = store.pendingDevices ?? null;
  }

  async #activeCount(user: string): Promise<number> {
    return (await this.store.activeDeviceKeys(user)).length;
  }

  #tooMany(user: string): string {
    return `${user} has ${this.opts.maxActive} active devices, the most this server allows; revoke one first ("securechat device revoke")`;
  }

  /** The user's waiting enrollments, the expired ones dropped. */
  pendingOf(user: string, now: number): PendingEnrollment[] {
    const list = (this.#pending.get(user) ?? []).filter((p) => p.expires > now);
    if (list.length > 0) this.#pending.set(user, list);
    else this.#pending.delete(user);
    return list;
  }

  /** The user's waiting enrollments as every node sees them. */
  async #waiting(user: string, now: number): Promise<Omit<PendingEnrollment, "waiter">[]> {
    return this.#shared ? await this.#shared.pending(user, now) : this.pendingOf(user, now);
  }

  /**
   * Forgets expired enrollments (the server's sweep). A cluster's core also
   * deletes the shared ones and, under the policy "password", records and
   * stores the enrollments its edges are waiting on (#enrolledByCore).
   */
  prune(now: number): void {
    for (const user of [...this.#pending.keys()]) this.pendingOf(user, now);
    const shared = this.#shared;
    if (!shared || !this.journal || this.#sweeping) return;
    this.#sweeping = true;
    (async () => {
      await shared.prunePending(now);
      if (this.opts.enroll === "password") await this.#recordWaiting(shared, this.journal!, now);
    })()
      .catch(() => {})
      .finally(() => {
        this.#sweeping = false;
      });
  }

  /** The core, policy "password": each waiting enrollment is recorded as enrolled by the password, then stored. */
  async #recordWaiting(shared: PendingDevices, journal: Pick<Journal, "recording" | "append">, now: number): Promise<void> {
    for (const p of await shared.pendingAll(now, SWEEP_ENROLLMENTS)) {
      if (!journal.recording) return;
      // Taken once; past the cap (a race between two new machines), it is dropped and its edge answers not_recorded.
      if (!(await shared.takePending(p.user, p.key, now))) continue;
      if ((await this.#activeCount(p.user)) >= this.opts.maxActive) continue;
      if ((await this.store.devices(p.user)).some((d) => constantTimeEqual(d.key, p.key))) continue;
      // Stored only once recorded: a core fenced before its COMMIT lets nobody in (the waiting edge answers not_recorded).
      await journal.append({ kind: "device_enrolled", user: p.user, device: deviceId(p.key), key: toBase64(p.key), name: p.name, by: "password", source: p.source, ts: now }).durable;
      await this.store.addDevice(p.user, { key: p.key, name: p.name, enrolledAt: now, enrolledBy: "password", revokedAt: null }, DEVICE_LIST_MAX);
    }
  }

  /**
   * A cluster's edge, policy "password": the enrollment waits in the shared
   * store for the core to record it (its sweep, every second), and the
   * attempt is a login by the new device once its key is active; not
   * recorded within CORE_ENROLL_WAIT_MS (no core, or its transcript
   * failing), it is withdrawn and refused `not_recorded`.
   */
  async #enrolledByCore(p: Omit<PendingEnrollment, "waiter">): Promise<{ kind: "login" }> {
    const shared = this.#shared;
    const refused = () => new SecureChatError("not_recorded", "the server could not record the enrollment in time (its chat core is moving or its transcript failing); retry later");
    if (!shared) throw refused();
    if (!(await shared.putPending(p, DEVICE_PENDING_MAX, p.since))) {
      throw new SecureChatError("too_many_pending", `${p.user} has ${DEVICE_PENDING_MAX} enrollments waiting already; retry in a moment`);
    }
    for (const deadline = Date.now() + CORE_ENROLL_WAIT_MS; Date.now() < deadline; ) {
      await Bun.sleep(APPROVAL_POLL_MS);
      if ((await this.store.activeDeviceKeys(p.user)).some((k) => constantTimeEqual(k, p.key))) return { kind: "login" };
    }
    await shared.takePending(p.user, p.key, Date.now());
    // Recorded by the core just as it was withdrawn: it is enrolled after all.
    if ((await this.store.activeDeviceKeys(p.user)).some((k) => constantTimeEqual(k, p.key))) return { kind: "login" };
    throw refused();
  }

  /**
   * A cluster edge: every `everyMs`, each enrollment a connection here
   * waits on whose key is now an active device of its account (the core
   * approved it) lets its connection in. Returns the stop.
   */
  watch(everyMs = APPROVAL_POLL_MS): () => void {
    let busy = false;
    const tick = async (): Promise<void> => {
      const now = Date.now();
      for (const user of [...this.#pending.keys()]) {
        const waiting = this.pendingOf(user, now).filter((p) => p.waiter);
        if (waiting.length === 0) continue;
        const active = await this.store.activeDeviceKeys(user);
        for (const p of waiting) {
          if (!active.some((k) => constantTimeEqual(k, p.key))) continue;
          this.#pending.set(
            user,
            this.pendingOf(user, Date.now()).filter((q) => q !== p),
          );
          p.waiter?.();
        }
      }
    };
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      tick()
        .catch(() => {})
        .finally(() => {
          busy = false;
        });
    }, everyMs);
    return () => clearInterval(timer);
  }

  /**
   * An `enroll` whose password checked out. "login": the key is an active
   * device now (it was already, or the policy is "password" and its
   * enrollment was recorded and stored), so the attempt is a password
   * login by it. Otherwise the enrollment waits for approval. Refusals
   * throw: `device_revoked`, `too_many_devices`, `too_many_pending`,
   * `not_recorded`.
   */
  async enroll(user: string, key: Uint8Array, name: string, source: string, now: number): Promise<{ kind: "login" } | { kind: "pending"; pending: PendingEnrollment }> {
    const known = (await this.store.devices(user)).find((d) => constantTimeEqual(d.key, key));
    if (known && known.revokedAt === null) return { kind: "login" };
    if (known) throw new SecureChatError("device_revoked", `this device (${deviceId(key)}) was revoked; make a new key ("securechat device add" with no key for ${user} on this machine)`);
    if ((await this.#activeCount(user)) >= this.opts.maxActive) throw new SecureChatError("too_many_devices", this.#tooMany(user));
    if (this.opts.enroll === "password") {
      if (!this.journal) return this.#enrolledByCore({ user, key, name, source, since: now, expires: now + this.opts.pendingTtlMs });
      if (!this.journal.recording) throw new SecureChatError("not_recorded", "the server cannot record the enrollment right now (its transcript is failing); retry later");
      await this.journal.append({ kind: "device_enrolled", user, device: deviceId(key), key: toBase64(key), name, by: "password", source, ts: now }).durable?.catch(() => {
        throw new SecureChatError("not_recorded", "the server could not record the enrollment; retry later");
      });
      await this.store.addDevice(user, { key, name, enrolledAt: now, enrolledBy: "password", revokedAt: null }, DEVICE_LIST_MAX);
      return { kind: "login" };
    }
    const tooMany = (): never => {
      throw new SecureChatError("too_many_pending", `${user} has ${DEVICE_PENDING_MAX} enrollments waiting for approval already; approve them or wait until they expire`);
    };
    const list = this.pendingOf(user, now);
    const same = list.find((p) => constantTimeEqual(p.key, key));
    const fresh = { user, key, name, source, since: now, expires: now + this.opts.pendingTtlMs };
    // Shared: the bound is the account's across the nodes, the renaming of a key asked again too.
    if (this.#shared && !(await this.#shared.putPending(fresh, DEVICE_PENDING_MAX, now))) tooMany();
    if (same) {
      same.name = name;
      return { kind: "pending", pending: same };
    }
    if (!this.#shared && list.length >= DEVICE_PENDING_MAX) tooMany();
    const pending: PendingEnrollment = { ...fresh, waiter: null };
    this.#pending.set(user, [...this.pendingOf(user, now), pending]);
    return { kind: "pending", pending };
  }

  /** `device_list`: the account's devices (this session's marked) and its waiting enrollments. */
  async list(me: DeviceRequester, now: number): Promise<Message<"devices">> {
    return {
      type: "devices",
      devices: (await this.store.devices(me.user)).map((d) => ({
        id: deviceId(d.key),
        key: d.key,
        name: d.name,
        enrolled: d.enrolledAt,
        by: d.enrolledBy,
        ...(d.revokedAt !== null ? { revoked: d.revokedAt } : {}),
        ...(me.device && constantTimeEqual(me.device, d.key) ? { current: true } : {}),
      })),
      pending: (await this.#waiting(me.user, now)).map((p) => ({ key: p.key, name: p.name, source: p.source, since: p.since, expires: p.expires })),
    };
  }

  /**
   * `device_approve`: the session's device signed the enrollment statement
   * for a waiting key. Recorded (`device_enrolled`, with the signature),
   * then stored; the new device's waiting connection, if any, is let in.
   */
  async approve(me: DeviceRequester, key: Uint8Array, sig: Uint8Array, now: number): Promise<Message<"device_added"> | Notice> {
    const pending = (await this.#waiting(me.user, now)).find((p) => constantTimeEqual(p.key, key));
    if (!pending) return notice("unknown_enrollment", `no enrollment of ${deviceId(key)} is waiting (it expired, or was never asked for); run "securechat device add" on the new machine again`);
    if (!me.device || !verifyEnrollment(me.device, me.user, key, sig)) {
      return notice("bad_enrollment_signature", "the approval is not signed by the device this session logged in from");
    }
    if ((await this.#activeCount(me.user)) >= this.opts.maxActive) return notice("too_many_devices", this.#tooMany(me.user));
    const journal = this.journal;
    if (!journal?.recording) return notice("not_recorded", "the server cannot record the enrollment right now (its transcript is failing); retry later");
    // Approved meanwhile from another session (the count is asked of the store): once only.
    const gone = notice("unknown_enrollment", `no enrollment of ${deviceId(key)} is waiting any more (another device approved it)`);
    if (this.#shared) {
      if (!(await this.#shared.takePending(me.user, key, now))) return gone;
    } else {
      const list = this.pendingOf(me.user, now);
      if (!list.includes(pending as PendingEnrollment)) return gone;
      this.#pending.set(
        me.user,
        list.filter((p) => p !== pending),
      );
    }
    const by = deviceId(me.device);
    // Stored (and so let in, on any node) only once the line is durable: a core fenced before its COMMIT enrolls nothing.
    const recorded = await journal.append({ kind: "device_enrolled", user: me.user, session: me.session, device: deviceId(key), key: toBase64(key), name: pending.name, by, sig: toBase64(sig), source: pending.source, ts: now }).durable?.then(
      () => true,
      () => false,
    );
    if (recorded === false) return notice("not_recorded", "the server could not record the enrollment; run \"securechat device add\" on the new machine again");
    await this.store.addDevice(me.user, { key, name: pending.name, enrolledAt: now, enrolledBy: by, revokedAt: null }, DEVICE_LIST_MAX);
    // On a cluster the new machine's edge sees the key active (watch).
    if (!this.#shared) (pending as PendingEnrollment).waiter?.();
    return { type: "device_added", id: deviceId(key) };
  }

  /**
   * `device_revoke`: `id` names an active device of the user other than
   * the session's own (so the account always keeps one). Recorded (`device_revoked`), then
   * the device is marked revoked and its tickets deleted; the caller ends
   * the sessions standing on the returned key.
   */
  async revoke(me: DeviceRequester, id: string, now: number): Promise<{ key: Uint8Array } | Notice> {
    const active = (await this.store.devices(me.user)).filter((d) => d.revokedAt === null);
    const target = active.find((d) => deviceId(d.key) === id);
    if (!target) return notice("unknown_device", `no active device ${id} of yours; see "securechat device list"`);
    if (me.device && constantTimeEqual(me.device, target.key)) {
      return notice("current_device", `${id} is the device this session logged in from; revoke it from another of your devices`);
    }
    const journal = this.journal;
    if (!journal?.recording) return notice("not_recorded", "the server cannot record the revocation right now (its transcript is failing); retry later");
    journal.append({ kind: "device_revoked", user: me.user, session: me.session, device: id, key: toBase64(target.key), ts: now });
    await this.store.revokeDevice(me.user, target.key, now);
    return { key: target.key };
  }
}
