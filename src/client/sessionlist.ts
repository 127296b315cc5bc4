/**
 * `securechat sessions` as a person reads it: one line per live session,
 * then one per ticket with no live session (the device and address it was
 * issued to), each within 80 columns for an IPv4 source.
 */
import type { Message } from "../protocol/messages.ts";

/** A time as UTC to the minute, without the year: `12-03 13:40`. */
function when(ms: number): string {
  return new Date(ms).toISOString().slice(5, 16).replace("T", " ");
}

export function formatSessions(s: Message<"sessions">): string {
  const lines = ["ID            DEVICE        SINCE UTC    EXPIRES UTC  FROM"];
  // The command's own connection is the current one; others on its ticket run on this machine.
  const here = s.live.find((l) => l.current)?.ticket;
  for (const l of s.live) {
    const note = l.current ? "  (this command)" : here !== undefined && l.ticket === here ? "  (this machine)" : "";
    lines.push(`${l.id}  ${l.device}  ${when(l.since)}  ${when(l.expires)}  ${l.source}${note}`);
  }
  const inUse = new Set(s.live.map((l) => l.ticket));
  const idle = s.tickets.filter((t) => !inUse.has(t.id));
  if (idle.length > 0 || s.more_tickets) {
    lines.push("", "tickets with no live session (a login kept for later):");
    for (const t of idle) lines.push(`${t.id}  ${t.device ?? "-           "}  ${when(t.since)}  ${when(t.expires)}  ${t.source || "-"}`);
    if (s.more_tickets) lines.push(`... and ${s.more_tickets} more`);
  }
  return `${lines.join("\n")}\n`;
}
