#!/usr/bin/env bun
// Entry point of the `securechat` executable: everything else is loaded lazily
// by the command that needs it, so `--help` stays fast.
import { main } from "./cli.ts";

process.exitCode = await main(process.argv.slice(2));
