/** Exit codes of the user-visible contract (docs/DESIGN.md §2, README "Exit codes"). */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  AUTH: 3,
  HOST_KEY: 4,
  TRANSCRIPT: 5,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * An error meant for a person: one lowercase line saying what failed, then
 * optional `hint:` lines saying what to do. Commands throw it; src/cli.ts
 * prints it and exits with `exitCode`.
 */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hints: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
