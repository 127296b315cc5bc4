/**
 * `securechat chat`: picks the front end and wires it to the ChatClient.
 * - stdin a terminal: the interactive Screen (input line at the bottom,
 *   rooms as windows: chatwindow.ts). A password asked mid-chat (the ticket
 *   expired) is asked with the Screen suspended: echo off, the input line
 *   hidden, nothing typed reaching the chat line or its history; Ctrl-C
 *   there ends the client (exit 1, with how to log in again).
 * - stdin not a terminal: each line is a message (or a /command); EOF leaves
 *   after every ack is in.
 * - `--json` or stdout not a terminal: one JSON object per event on stdout;
 *   diagnostics (local notes, disconnects, reconnects, lines not sent) also
 *   as text lines on stderr, for a person watching a bot.
 * The ignore list (/ignore, src/client/ignores.ts) is the interactive
 * screen's alone: piped input and JSON output carry every line, ignored
 * users' too, as a bot or an auditor needs them; there /ignore says so.
 * Both reconnect after a dropped connection or a server restart (not with
 * `--no-reconnect`) and resume every room (src/client/chat.ts).
 * Output that waits for a slow reader of stdout is bounded (BoundedOutput).
 * The exit status is 0 only if the session ended because this client left,
 * every line read was sent and acknowledged, and the --transcript file got
 * every line; otherwise 1, with one line saying everything that went wrong.
 */
import type { WitnessPolicy } from "./logcheck.ts";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { checkUserName } from "./account.ts";
import { ChatClient, type ChatEvent } from "./chat.ts";
import { receiptError } from "./receipts.ts";
import { parseLine, runCommand } from "./chatcommands.ts";
import { eventJson, eventLine, plainLine } from "./chatview.ts";
import { ChatWindow } from "./chatwindow.ts";
import { IgnoreList } from "./ignores.ts";
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
  /** --witness, --witness-quorum: the witnesses whose cosignatures the server's log must carry. */
  witnesses?: WitnessPolicy;
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

  let screen = null as Screen | null;
  let win = null as ChatWindow | null;
  /** The password prompt mid-chat was cancelled (Ctrl-C): the client is ending. */
  let loginCancelled = false;
  let quit = () => {};

  let started = false;
  const password = async (): Promise<string> => {
    // Piped, the ticket expired mid-chat: stdin now carries chat lines, never a password.
    if (started && stdin) throw new SecureChatError("no_ticket", `the session ticket for ${user} at ${addr.id} expired and there is no terminal to ask for the password`, { detail: { user, server: addr.id } });
    if (a.passwordStdin && stdin) {
      const line = await stdin.next();
      if (!line) throw new SecureChatError("password_stdin_empty", "--password-stdin: the first line of stdin is empty");
      return line;
    }
    if (!interactive) throw new SecureChatError("no_ticket", `no valid session ticket for ${user} at ${addr.id}`, { detail: { user, server: addr.id } });
    const s = screen;
    if (!s?.active) return promptHidden(`Password for ${user}@${addr.id}: `);
    // Mid-chat: the prompt gets the terminal to itself, cooked and without echo, the chat line hidden.
    s.suspend();
    try {
      return await promptHidden(`Your session expired. Password for ${user}@${addr.id} (Ctrl-C to quit): `);
    } catch (e) {
      loginCancelled = true;
      s.stop();
      quit();
      throw e;
    } finally {
      if (!loginCancelled) s.resume();
    }
  };

  const color = !json && colorEnabled(process.stdout.isTTY === true);
  const out = new BoundedOutput(process.stdout);
  let engine: ChatClient | null = null; // the client below, once made: show may be called while it is
  const show = (e: ChatEvent) => {
    if (loginCancelled) return;
    if (win) return win.show(e);
    if (json) {
      // The failure that ends the client is said once on stderr, with its hints, as it exits.
      if (DIAGNOSTICS.has(e.type) && !(e.type === "local" && e.text === engine?.failure)) {
        const line = eventLine(e, user, false);
        if (line) process.stderr.write(`securechat: ${plainLine(line).replace(/^-- /, "")}\n`);
      }
      out.write(`${eventJson(e)}\n`);
      return;
    }
    const line = eventLine(e, user, color);
    if (!line) return;
    out.write(`${plainLine(line, process.stdout.columns)}\n`);
  };

  if (interactive) {
    // Read first: a bad ignore list is a one-line error before anything is shown, never a screen that hides the wrong people.
    const ignores = json ? null : new IgnoreList(addr.id, user);
    // Made before the client starts, so the first lines (connected, the room, its history) are in the scrollback.
    const s = new Screen({
      input: process.stdin,
      output: process.stdout,
      prompt: `${user}> `,
      onLine: (line) => {
        const cmd = parseLine(line, true);
        if (!cmd) return;
        const front = { notify: (on: boolean) => win?.setNotify(on), ignore: (u?: string) => win?.ignore(u), unignore: (u: string) => win?.unignore(u) };
        void runCommand(client, cmd, front).then((goOn) => goOn || quit());
      },
      onEof: () => quit(),
      onInterrupt: () => {
        if (s.editor.line !== "") {
          s.editor.clear();
          s.redraw();
        } else quit();
      },
      onKey: (name) => win?.key(name),
      complete: (word, atStart) => win?.complete(word, atStart) ?? [],
      pasteQuestion: (n) => `send ${n} lines to #${client.room}? [y/N] `,
    });
    screen = s;
    if (ignores) win = new ChatWindow(s, { get room() { return client.room; }, get rooms() { return client.rooms; }, switchTo: (r) => client.switchTo(r) }, user, color, ignores);
  }

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
      witnesses: a.witnesses,
      // Piped: a full queue stops the reading of stdin instead of refusing lines.
      waitWhenQueueFull: !interactive,
    },
    { event: show, congested: () => out.congested() },
  );
  engine = client;
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
  if (screen) {
    const s = screen;
    await new Promise<void>((resolve) => {
      let quitting = false;
      quit = () => {
        if (quitting) return;
        quitting = true;
        void client.quit().then(resolve);
      };
      process.once("exit", () => s.stop());
      // A signal (kill, a hang-up, Ctrl-C while the terminal is cooked for a prompt) still restores the terminal.
      for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
        process.once(signal, () => {
          s.stop();
          process.exit(code);
        });
      }
      if (win) s.setPrompt(win.prompt());
      s.start();
      void client.finished.then(quit);
    });
    s.stop();
    if (loginCancelled) {
      // The same code and detail as a session the server ended on expiry: exit 1 and the "securechat login" hint.
      throw new SecureChatError("chat_incomplete", "your session expired and no password was given", { detail: { unacknowledged: client.unacknowledged, ended: "session_expired", user, server: addr.id } });
    }
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
    client.receiptsMissing > 0 ? `${client.receiptsMissing} acknowledged message(s) got no receipt` : null,
  ].filter((p) => p !== null);
  if (failed) {
    // The code of what ended the session (a changed host key: exit 4 and its hint, as a fresh command).
    throw new SecureChatError(failed.code, [failed.message, ...problems].join("; "), { cause: failed, detail: failed.detail });
  }
  if (client.receiptFailures.length > 0) {
    // A receipt that does not check is evidence against the server's log: exit as a failed log check does.
    throw new SecureChatError("receipt_failed", [receiptError(client.receiptFailures).message, ...problems].join("; "));
  }
  if (problems.length > 0) {
    throw new SecureChatError("chat_incomplete", problems.join("; "), { detail: { unacknowledged: client.unacknowledged, ended: client.failureCode ?? "", user, server: addr.id } });
  }
}
