/**
 * Messages through SecureChannel at chat size (~100 bytes of JSON): what
 * JSON encoding, parsing and schema validation add on top of the record.
 * The protocol has no chat message yet; an `error` message (two text
 * fields, well-formedness checked) of chat size stands in for one.
 */
import { randomBytes } from "../src/crypto/index.ts";
import { RecordOpener, RecordSealer, SecureChannel } from "../src/protocol/channel.ts";
import { DEFAULT_REKEY_BYTES, DEFAULT_REKEY_RECORDS, FRAME_HEADER_LENGTH } from "../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessage, encodeMessageBytes } from "../src/protocol/messages.ts";
import { type Measurement, measureGroup } from "./lib/measure.ts";
import { perSecond, spread, table, time } from "./lib/table.ts";
import { RING, ringOpen } from "./records.ts";
import type { Section } from "./micro.ts";

export function channelSection(): Section {
  const keys = { c2s: randomBytes(32), s2c: randomBytes(32), rekey: { records: DEFAULT_REKEY_RECORDS, bytes: DEFAULT_REKEY_BYTES } };
  const message: Message = {
    type: "error",
    code: "chat",
    message: "are we still on for the 3pm review? I pushed the fixes to the branch",
  };
  const encoded = encodeMessage(message);
  const bytes = encodeMessageBytes(message);

  const client = new SecureChannel(keys, "client");
  const sealer = new RecordSealer(keys.c2s, keys.rekey);
  const bodies = Array.from({ length: RING }, () => client.seal([message]).subarray(FRAME_HEADER_LENGTH));
  const openValidate = ringOpen(bodies, () => {
    const server = new SecureChannel(keys, "server");
    return { open: (b: Uint8Array) => server.open(b, ["error"]) };
  });
  const openOnly = ringOpen(bodies, () => new RecordOpener(keys.c2s, keys.rekey));
  const first = openValidate()[0];
  if (first?.type !== "error" || first.message !== message.message) throw new Error("bench: channel round trip failed");

  const [sealMessage, sealString, sealRecord, encode, open, openRecord, decode] = measureGroup([
    { name: "SecureChannel.seal([message])", fn: () => client.seal([message]) },
    { name: "SecureChannel.seal([pre-encoded])", fn: () => client.seal([encoded]) },
    { name: "RecordSealer.seal(bytes)", fn: () => sealer.seal(bytes) },
    { name: "encodeMessage", fn: () => encodeMessage(message) },
    { name: "SecureChannel.open + validate", fn: openValidate },
    { name: "RecordOpener.open", fn: openOnly },
    { name: "decodeMessage", fn: () => decodeMessage(bytes, ["error"]) },
  ]);
  const m = { sealMessage, sealString, sealRecord, encode, open, openRecord, decode };

  const row = (label: string, x: Measurement, note = ""): string[] => [label, time(x.median), spread(x), perSecond(x.median), note];
  const share = (part: number, whole: Measurement): string => `${Math.round((part / whole.median) * 100)}% of`;
  const jsonSeal = m.sealMessage.median - m.sealString.median;
  const jsonOpen = m.open.median - m.openRecord.median;
  const text = table(
    `Messages (${bytes.length}-byte JSON message, one per record)`,
    ["op", "median", "min/max", "rate", "note"],
    [
      row("SecureChannel.seal([message])", m.sealMessage, `JSON encode ${time(jsonSeal)}, ${share(jsonSeal, m.sealMessage)} it`),
      row("SecureChannel.seal([pre-encoded string])", m.sealString),
      row("RecordSealer.seal(same bytes)", m.sealRecord),
      row("encodeMessage alone", m.encode),
      null,
      row("SecureChannel.open + validate", m.open, `parse+validate ${time(jsonOpen)}, ${share(jsonOpen, m.open)} it`),
      row("RecordOpener.open (same record)", m.openRecord),
      row("decodeMessage alone (utf8+JSON+schema)", m.decode),
    ],
  );

  return {
    text,
    headline:
      `per ${bytes.length}-byte message: JSON encode +${time(jsonSeal)} (${share(jsonSeal, m.sealMessage)} seal), ` +
      `parse+validate +${time(jsonOpen)} (${share(jsonOpen, m.open)} open)`,
    measurements: Object.values(m),
    summary: {
      messageBytes: bytes.length,
      sealMessageUs: m.sealMessage.median / 1e3,
      sealPreEncodedUs: m.sealString.median / 1e3,
      jsonEncodeUs: jsonSeal / 1e3,
      openValidateUs: m.open.median / 1e3,
      openRecordUs: m.openRecord.median / 1e3,
      parseValidateUs: jsonOpen / 1e3,
    },
  };
}
