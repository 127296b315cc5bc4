/**
 * The securechat microbenchmark: handshakes, records and messages, each
 * against a baseline measured in the same run (the machine is shared and
 * noisy, so the ratios are the headline, not the absolute figures). The
 * load benchmark (the real server in its own process) is `bun run bench`.
 *
 *   bun run bench:micro            ~1 min, human-readable tables
 *   bun run bench:micro --quick    short samples
 *   bun run bench:micro --json     one JSON object on stdout
 *
 * Never fails on speed: exits 0 unless something throws.
 */
import os from "node:os";
import { channelSection } from "./channel.ts";
import { handshakeSection } from "./handshake.ts";
import { type Config, type Measurement, configure } from "./lib/measure.ts";
import { recordsSection } from "./records.ts";

export interface Section {
  text: string;
  /** One line for the summary at the end. */
  headline: string;
  measurements: Measurement[];
  summary: Record<string, unknown>;
}

const args = new Set(Bun.argv.slice(2));
for (const a of args) {
  if (a !== "--quick" && a !== "--json") {
    console.error(`usage: bun run bench:micro [--quick] [--json] (unknown argument ${a})`);
    process.exit(2);
  }
}
const quick = args.has("--quick");
const json = args.has("--json");
const config: Config = quick ? { samples: 5, sampleMs: 30, warmupMs: 30 } : { samples: 9, sampleMs: 100, warmupMs: 100 };
configure(config);

const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  platform: `${os.platform()} ${os.arch()}`,
  bun: Bun.version,
};

const started = Bun.nanoseconds();
const sections = { handshake: handshakeSection(), records: recordsSection(), channel: channelSection() };
const seconds = (Bun.nanoseconds() - started) / 1e9;

if (json) {
  const out = {
    machine,
    mode: quick ? "quick" : "default",
    config,
    seconds,
    summary: Object.fromEntries(Object.entries(sections).map(([k, s]) => [k, s.summary])),
    measurements: Object.fromEntries(Object.entries(sections).map(([k, s]) => [k, s.measurements])),
  };
  console.log(JSON.stringify(out, null, 2));
} else {
  console.log(
    `securechat microbench — ${machine.cpu}, ${machine.cores} cores, ${machine.platform}, Bun ${machine.bun}\n` +
      `${quick ? "quick" : "default"} mode: median of ${config.samples} samples of ~${config.sampleMs} ms after ${config.warmupMs} ms warm-up; ` +
      `min/max = fastest/slowest sample vs the median\n`,
  );
  for (const s of Object.values(sections)) console.log(`${s.text}\n`);
  console.log(["Summary", ...Object.values(sections).map((s) => `- ${s.headline}`)].join("\n"));
  console.log(`(${seconds.toFixed(1)} s)`);
}
