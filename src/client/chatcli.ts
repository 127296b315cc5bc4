/**
 * `securechat chat`: picks the front end and wires it to the ChatClient.
 * - stdin a terminal: the interactive Screen (input line at the bottom).
 * - stdin not a terminal: each line is a message (or a /command); EOF leaves
 *   after every ack is in.
 * - `--json` or stdout not a terminal: one JSON object per event on stdout;
 *   diagnostics (local notes, disconnects, reconnects, lines not sent) also
 *   as text lines on stderr, for a person watching a bot.
 * Both reconnect after a dropped connection or a server restart (not with
 * `--no-reconnect`) and resume every room (src/client/chat.ts).
 * Output that waits for a slow reader of stdout is bounded (BoundedOutput).
 * The exit status is 0 only if the session ended because this client left,
 * every line read was sent and acknowledged, and the --transcript file got
 * every line; otherwise 1, with one line saying everything that went wrong.
 */
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { checkUserName } from "./account.ts";
import { ChatClient, type ChatEvent } from "./chat.ts";
import { parseLine, runCommand } from "./chatcommands.ts";
import { eventJson, eventLine, plainLine } from "./chatview.ts";
import type { ServerAddress } from "./connection.ts";
import { BoundedOutput } from "./output.ts";
import { promptHidden } from "./prompt.ts";
import { pickUser } from "./sessions.ts";
import { StdinLines } from "./stdin.ts";
import { Screen } from "./tui/screen.ts";
import { colorEnabled } from "./tui/colors.ts";

/** `chat`'s flags, checked (src/commands/chat.ts): nothing here is parsed again. */
export interface ChatConfig {
  addr: ServerAddress;
  /** --user (or config.toml's user), a valid name; else the one user logged in to `addr` is chosen. */
  user?: string;
  room: string;
  json: boolean;
  transcript?: string;
  transcriptMax?: number;
  passwordStdin: boolean;
  acceptNewHost: boolean;
  /** --no-history: none of the first room's past; --since-seq N: only what came after seq N. */
  history?: "all" | "none" | { since: number };
  /** --no-reconnect: the first connection loss ends the client (exit 1). */
  reconnect?: boolean;
}

/** After the session ended early, how much of stdin is looked at to say what was not sent (characters), and for how long. */
const UNREAD_MAX = 1024 * 1024;
const UNREAD_WAIT_MS = 500;

/** What to say about input that was never sent, or null if there was none. */
async function unsentInput(stdin: StdinLines): Promise<string | null> {
  const { lines, eof } = await stdin.unread(UNREAD_MAX, UNREAD_WAIT_MS);
  if (eof) return lines === 0 ? null : `input not sent: ${lines} line(s)`;
  return lines === 0 ? "input not sent: stdin was still open" : `input not sent: ${lines} line(s) so far, and stdin was still open`;
}

const ENDED = Symbol("ended");

/** Events that also go to stderr as text when stdout carries JSON: what a person watching a bot needs to know. */
const DIAGNOSTICS = new Set<ChatEvent["type"]>(["local", "disconnected", "reconnecting", "reconnected", "unsent", "error"]);

export async function runChat(a: ChatConfig): Promise<void> {
  const addr = a.addr;
  const user = pickUser(addr.id, a.user);
  checkUserName(user); // a name taken from a ticket file's name
  const interactive = process.stdin.isTTY === true;
  const json = a.json || !process.stdout.isTTY;
  const stdin = interactive ? null : new StdinLines();

  let started = false;
  const password = async (): Promise<string> => {
    // Piped, the ticket expired mid-chat: stdin now carries chat lines, never a password.
    if (started && stdin) throw new SecureChatError("no_ticket", `the session ticket for ${user} at ${addr.id} expired and there is no terminal to ask for the password`, { detail: { user, server: addr.id } });
    if (a.passwordStdin && stdin) {
      const line = await stdin.next();
      if (!line) throw new SecureChatError("password_stdin_empty", "--password-stdin: the first line of stdin is empty");
      return line;
    }
    if (interactive) return promptHidden(`Password for ${user}@${addr.id}: `);
    throw new SecureChatError("no_ticket", `no valid session ticket for ${user} at ${addr.id}`, { detail: { user, server: addr.id } });
  };

  let screen = null as Screen | null;
  const color = !json && colorEnabled(process.stdout.isTTY === true);
  const out = new BoundedOutput(process.stdout);
  const show = (e: ChatEvent) => {
    if (json) {
      if (DIAGNOSTICS.has(e.type)) {
        const line = eventLine(e, user, false);
        if (line) process.stderr.write(`securechat: ${plainLine(line).replace(/^-- /, "")}\n`);
      }
      out.write(`${eventJson(e)}\n`);
      return;
    }
    const line = eventLine(e, user, color);
    if (!line) return;
    if (screen) screen.print(line);
    else out.write(`${plainLine(line, process.stdout.columns)}\n`);
  };

  const client = new ChatClient(
    {
      addr,
      user,
      trust: { acceptNew: a.acceptNewHost },
      room: a.room,
      password,
      transcriptFile: a.transcript,
      transcriptMax: a.transcriptMax,
      reconnect: a.reconnect ?? true,
      history: a.history,
      // Piped: a full queue stops the reading of stdin instead of refusing lines.
      waitWhenQueueFull: !interactive,
    },
    { event: show, congested: () => out.congested() },
  );
  try {
    await client.start();
  } catch (e) {
    if (!stdin || !isSecureChatError(e)) throw e;
    const unsent = await unsentInput(stdin);
    // The same code and detail: the same exit code and hints, with the unsent input said.
    throw unsent ? new SecureChatError(e.code, `${e.message}; ${unsent}`, { cause: e, detail: e.detail }) : e;
  }
  started = true;

  let unsent: string | null = null;
  if (interactive) {
    await new Promise<void>((resolve) => {
      let quitting = false;
      const quit = () => {
        if (quitting) return;
        quitting = true;
        void client.quit().then(resolve);
      };
      screen = new Screen({
        input: process.stdin,
        output: process.stdout,
        prompt: `${user}> `,
        onLine: (line) => {
          const cmd = parseLine(line);
          if (!cmd) return;
          void runCommand(client, cmd).then((goOn) => goOn || quit());
        },
        onEof: quit,
        onInterrupt: () => {
          if (screen!.editor.line !== "") {
            screen!.editor.clear();
            screen!.redraw();
          } else quit();
        },
      });
      const restore = () => screen?.stop();
      process.once("exit", restore);
      screen.start();
      void client.finished.then(quit);
    });
    screen?.stop();
  } else {
    const ended = client.finished.then((): typeof ENDED => ENDED);
    for (;;) {
      if (client.ended) {
        // The server ended the session: whatever stdin still holds was never sent.
        unsent = await unsentInput(stdin!);
        break;
      }
      const line = await Promise.race([stdin!.next(), ended]);
      if (line === ENDED) continue;
      if (line === null) break;
      const cmd = parseLine(line);
      if (!cmd) continue;
      if (!(await runCommand(client, cmd))) break;
    }
    stdin!.close();
    await client.quit();
  }
  const failed = client.failureError;
  const problems = [
    failed ? null : client.failure,
    unsent,
    client.unacknowledged > 0 ? `${client.unacknowledged} message(s) were not acknowledged by the server` : null,
    client.transcriptProblem,
  ].filter((p) => p !== null);
  if (failed) {
    // The code of what ended the session (a changed host key: exit 4 and its hint, as a fresh command).
    throw new SecureChatError(failed.code, [failed.message, ...problems].join("; "), { cause: failed, detail: failed.detail });
  }
  if (problems.length > 0) {
    throw new SecureChatError("chat_incomplete", problems.join("; "), { detail: { unacknowledged: client.unacknowledged, ended: client.failureCode ?? "", user, server: addr.id } });
  }
}
