// Preloaded by bunfig.toml before every test file: all state the code could
// touch lives in one temporary directory, removed when the process exits.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = mkdtempSync(join(tmpdir(), "securechat-test-"));
process.env.SECURECHAT_HOME = join(root, "home");
process.env.SECURECHAT_DATA = join(root, "data");
process.env.XDG_CONFIG_HOME = join(root, "xdg-config");
process.env.XDG_DATA_HOME = join(root, "xdg-data");
process.env.NO_COLOR = "1";

process.on("exit", () => rmSync(root, { recursive: true, force: true }));
