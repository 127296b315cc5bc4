/**
 * `securechat device list` as a person reads it: the active devices (this
 * one marked), the revoked ones, and the enrollments waiting for approval
 * with their codes, each line within 80 columns for a short name.
 */
import { deviceCode } from "../protocol/devices.ts";
import type { Message } from "../protocol/messages.ts";
import { terminalText } from "../text.ts";

/** A time as UTC to the minute, without the year: `12-03 13:40`. */
function when(ms: number): string {
  return new Date(ms).toISOString().slice(5, 16).replace("T", " ");
}

/** Names come from the server and the other machines: shown escaped, and cut to a column. */
function shown(name: string, width: number): string {
  const s = terminalText(name === "" ? "(registration key)" : name);
  return (s.length > width ? `${s.slice(0, width - 1)}…` : s).padEnd(width);
}

export function formatDevices(user: string, r: Message<"devices">): string {
  const active = r.devices.filter((d) => d.revoked === undefined);
  const revoked = r.devices.filter((d) => d.revoked !== undefined);
  const lines = ["ID            NAME                  ENROLLED UTC  BY"];
  for (const d of active) lines.push(`${d.id}  ${shown(d.name, 20)}  ${when(d.enrolled)}   ${d.by}${d.current ? "  (this device)" : ""}`);
  if (revoked.length > 0) {
    lines.push("", "revoked:");
    for (const d of revoked) lines.push(`${d.id}  ${shown(d.name, 20)}  ${when(d.enrolled)}   revoked ${when(d.revoked!)}`);
  }
  if (r.pending.length > 0) {
    lines.push("", 'waiting for approval ("securechat device approve CODE" after checking the code on that machine):');
    for (const p of r.pending) lines.push(`${deviceCode(user, p.key)}  ${shown(p.name, 20)}  from ${terminalText(p.source) || "-"} until ${when(p.expires)}`);
  }
  return `${lines.join("\n")}\n`;
}
