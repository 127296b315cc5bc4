/** The version of this build: set by the build script (scripts/build.ts), "-dev" when run from source. */
declare const SECURECHAT_VERSION: string | undefined;
export const VERSION: string = typeof SECURECHAT_VERSION === "string" ? SECURECHAT_VERSION : "0.1.0-dev";
