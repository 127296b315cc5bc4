#!/usr/bin/env bun
// Entry point of the `securechat` executable: everything else is loaded lazily
// by the command that needs it, so `--help` stays fast.
import { main } from "./cli.ts";

const code = await main(process.argv.slice(2));
// A command is done when main returns: exit even if a handle (an open stdin
// pipe, a socket the peer keeps open) would keep the event loop alive, once
// what was written to stdout has been handed to the OS.
await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
process.exit(code);
