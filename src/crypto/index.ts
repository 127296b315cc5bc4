/**
 * The crypto module: the only code in securechat that calls primitives.
 * Everything above it (protocol, server, client, transcript) uses these
 * wrappers, which fix sizes, reject weak inputs and wipe what they can.
 */
export * from "./aesgcm.ts";
export * from "./ed25519.ts";
export * from "./hash.ts";
export * as labels from "./labels.ts";
export * from "./util.ts";
export * from "./x25519.ts";
export * from "./xchacha.ts";
export * from "./argon2.ts";
