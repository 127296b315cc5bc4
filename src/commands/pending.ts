import { CliError, EXIT } from "./exit.ts";

/** What a command says until its issue lands: a runtime failure, not a silent success. */
export function notImplemented(name: string, issue: number): never {
  throw new CliError(EXIT.FAILURE, `${name}: not implemented yet`, [`tracked in issue ${issue}`]);
}
