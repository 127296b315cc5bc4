/**
 * Builds dist/securechat: one self-contained executable. The version is
 * fixed at build time (package.json version + git commit when available).
 * The executable must not pick up configuration from the directory it runs
 * in, so .env and bunfig.toml autoloading are off.
 */
import pkg from "../package.json";

const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { stderr: "ignore" });
const sha = commit.success ? commit.stdout.toString().trim() : "";
const dirty = sha && Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.toString().trim() ? ".dirty" : "";
const version = sha ? `${pkg.version}+${sha}${dirty}` : pkg.version;

const result = await Bun.build({
  entrypoints: ["./src/main.ts"],
  target: "bun",
  format: "esm",
  minify: true,
  bytecode: true,
  sourcemap: "none",
  define: { SECURECHAT_VERSION: JSON.stringify(version) },
  compile: {
    outfile: "./dist/securechat",
    autoloadDotenv: false,
    autoloadBunfig: false,
    autoloadTsconfig: false,
    autoloadPackageJson: false,
  },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
console.log(`built dist/securechat ${version}`);
