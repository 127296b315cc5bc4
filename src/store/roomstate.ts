/**
 * A persistent room's state (PROTOCOL.md §7.9) and the one function that
 * changes it. The chat core, the in-memory journal, the transcript journal
 * and history.db's rebuild all apply `room_change` entries with
 * `applyRoomChange`, so what the server acts on and what a restart rebuilds
 * from the transcript cannot differ.
 */

/** What one moderation request did (the `action` of a `room_change` entry, TRANSCRIPT.md §2.4). */
export type RoomAction = "topic" | "op" | "deop" | "kick" | "ban" | "unban" | "mute" | "unmute" | "invite" | "mode" | "drop";

export const ROOM_ACTIONS: readonly RoomAction[] = ["topic", "op", "deop", "kick", "ban", "unban", "mute", "unmute", "invite", "mode", "drop"];

/** A room change as the journal records it: who did what to the room, and who owned it then. */
export interface RoomChange {
  kind: "room_change";
  room: string;
  /** Who did it, and from which session (base64 session id). */
  user: string;
  session: string;
  /** The room's owner when it was done (the user whose join created it). */
  owner: string;
  action: RoomAction;
  /** The user acted on (op, deop, kick, ban, unban, mute, unmute, invite). */
  target?: string;
  /** The new topic (absent: cleared), or a kick's reason. */
  text?: string;
  /** For `mode`: the modes set (true) or cleared (false); absent: unchanged. */
  inviteOnly?: boolean;
  secret?: boolean;
  ts: number;
}

export interface RoomState {
  owner: string;
  ops: Set<string>;
  topic?: string;
  inviteOnly: boolean;
  secret: boolean;
  bans: Set<string>;
  mutes: Set<string>;
  invites: Set<string>;
}

export function emptyRoomState(owner: string): RoomState {
  return { owner, ops: new Set(), inviteOnly: false, secret: false, bans: new Set(), mutes: new Set(), invites: new Set() };
}

/**
 * Applies one change to the persistent rooms in `states`: any change but a
 * kick makes the room persistent (gives it a state, owned by `owner`);
 * `drop` forgets it. A ban also takes away the target's op and invite.
 */
export function applyRoomChange(states: Map<string, RoomState>, e: RoomChange): void {
  if (e.action === "kick") return;
  if (e.action === "drop") {
    states.delete(e.room);
    return;
  }
  let s = states.get(e.room);
  if (!s) states.set(e.room, (s = emptyRoomState(e.owner)));
  if (e.action === "topic") {
    if (e.text === undefined) delete s.topic;
    else s.topic = e.text;
  } else if (e.action === "mode") {
    if (e.inviteOnly !== undefined) s.inviteOnly = e.inviteOnly;
    if (e.secret !== undefined) s.secret = e.secret;
  } else {
    const t = e.target ?? "";
    const [list, add] = LISTS[e.action];
    if (add) s[list].add(t);
    else s[list].delete(t);
    if (e.action === "ban") {
      s.ops.delete(t);
      s.invites.delete(t);
    }
  }
}

/** The list each of the other actions adds its target to (true) or removes it from. */
const LISTS: Record<Exclude<RoomAction, "topic" | "mode" | "kick" | "drop">, ["ops" | "bans" | "mutes" | "invites", boolean]> = {
  op: ["ops", true],
  deop: ["ops", false],
  ban: ["bans", true],
  unban: ["bans", false],
  mute: ["mutes", true],
  unmute: ["mutes", false],
  invite: ["invites", true],
};

export function cloneRoomState(s: RoomState): RoomState {
  return { ...s, ops: new Set(s.ops), bans: new Set(s.bans), mutes: new Set(s.mutes), invites: new Set(s.invites) };
}

/** history.db keeps a room's state as JSON (sorted lists, so equal states are equal text). */
export function roomStateToJson(s: RoomState): string {
  return JSON.stringify({
    owner: s.owner,
    ops: [...s.ops].sort(),
    ...(s.topic !== undefined ? { topic: s.topic } : {}),
    invite_only: s.inviteOnly,
    secret: s.secret,
    bans: [...s.bans].sort(),
    mutes: [...s.mutes].sort(),
    invites: [...s.invites].sort(),
  });
}

export function roomStateFromJson(json: string): RoomState {
  const o = JSON.parse(json) as { owner: string; ops: string[]; topic?: string; invite_only: boolean; secret: boolean; bans: string[]; mutes: string[]; invites: string[] };
  return {
    owner: o.owner,
    ops: new Set(o.ops),
    ...(o.topic !== undefined ? { topic: o.topic } : {}),
    inviteOnly: o.invite_only,
    secret: o.secret,
    bans: new Set(o.bans),
    mutes: new Set(o.mutes),
    invites: new Set(o.invites),
  };
}
