/**
 * Terminal input for secrets and questions. The password prompt reads in
 * raw mode: nothing echoed, backspace,
 * Ctrl-U to clear, Ctrl-C / Ctrl-D to cancel. Prompts go to stderr so stdout
 * stays clean for pipes.
 */
import { SecureChatError, isSecureChatError } from "../errors.ts";

const MAX_LINE = 4096;

export function stdinIsTerminal(): boolean {
  return process.stdin.isTTY === true;
}

/** `--password-stdin`: the first line of stdin, without its line ending (as `docker login` reads it). */
export async function readFirstLine(): Promise<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let text = "";
  const reader = Bun.stdin.stream().getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (value) {
        text += decoder.decode(value, { stream: true });
        value.fill(0); // the bytes are ours; the decoded string cannot be wiped
      }
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        text = text.slice(0, nl);
        break;
      }
      if (text.length > MAX_LINE) throw new SecureChatError("stdin_line_too_long", "the password on stdin is longer than 4096 characters");
      if (done) break;
    }
  } catch (e) {
    if (isSecureChatError(e, "stdin_line_too_long")) throw e;
    throw new SecureChatError("stdin_not_utf8", "stdin is not valid UTF-8", { cause: e });
  } finally {
    reader.releaseLock();
  }
  return text.replace(/\r$/, "");
}

function rawInput(prompt: string, echo: boolean): Promise<string> {
  const stdin = process.stdin;
  // Raw before the prompt shows: a key pressed as soon as it appears (Ctrl-C) is read here, not turned into a signal.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  stdin.resume();
  let buf = "";
  return new Promise<string>((resolve, reject) => {
    const done = (err: SecureChatError | null) => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      if (err) reject(err);
      else resolve(buf);
    };
    const onData = (chunk: Buffer) => {
      const typed = chunk.toString("utf8");
      chunk.fill(0); // the keystrokes' bytes; the string they became cannot be wiped
      for (const ch of typed) {
        if (ch === "\r" || ch === "\n") return done(null);
        if (ch === "\u0003" || (ch === "\u0004" && buf === "")) return done(new SecureChatError("cancelled", "cancelled"));
        if (ch === "\u007f" || ch === "\b") {
          if (buf.length > 0) {
            buf = [...buf].slice(0, -1).join("");
            if (echo) process.stderr.write("\b \b");
          }
        } else if (ch === "\u0015") {
          if (echo) process.stderr.write("\b \b".repeat([...buf].length));
          buf = "";
        } else if (ch >= " ") {
          if (buf.length >= MAX_LINE) return done(new SecureChatError("input_too_long", "input longer than 4096 characters"));
          buf += ch;
          if (echo) process.stderr.write(ch);
        }
      }
    };
    stdin.on("data", onData);
  });
}

/** Asks for a secret on the terminal with echo off. */
export function promptHidden(prompt: string): Promise<string> {
  if (!stdinIsTerminal()) {
    throw new SecureChatError("no_terminal", "no terminal to ask for the password");
  }
  return rawInput(prompt, false);
}

/** Asks a yes/no question on the terminal; anything but "yes" is no. */
export async function promptYesNo(question: string): Promise<boolean> {
  for (let i = 0; i < 3; i++) {
    const answer = (await rawInput(`${question} (yes/no) `, true)).trim().toLowerCase();
    if (answer === "yes") return true;
    if (answer === "no" || answer === "") return false;
    process.stderr.write('Please type "yes" or "no".\n');
  }
  return false;
}

/**
 * A new account's password: from `--password-stdin`, one try, checked by
 * `check` (the policy); or from the terminal, checked by `check` as soon as
 * it is typed and asked again if refused, then asked a second time to
 * confirm; `tries` attempts in all (a refusal or a mismatch uses one).
 */
export async function obtainNewPassword(opts: { fromStdin: boolean; check: (password: string) => Promise<void>; tries?: number }): Promise<string> {
  if (opts.fromStdin) {
    const pw = await obtainPassword({ fromStdin: true, confirm: false });
    await opts.check(pw);
    return pw;
  }
  const tries = opts.tries ?? 3;
  for (let i = 1; ; i++) {
    const again = i < tries ? "; try again" : "";
    const pw = await promptHidden("Password: ");
    try {
      await opts.check(pw);
    } catch (e) {
      if (!isSecureChatError(e, "password_policy") || i >= tries) throw e;
      process.stderr.write(`${e.message}${again}\n`);
      continue;
    }
    if ((await promptHidden("Repeat the password: ")) === pw) return pw;
    if (i >= tries) throw new SecureChatError("passwords_differ", "the two passwords differ");
    process.stderr.write(`the two passwords differ${again}\n`);
  }
}

/** The password from `--password-stdin` or the terminal; `confirm` asks twice (register). */
export async function obtainPassword(opts: { fromStdin: boolean; confirm: boolean; prompt?: string }): Promise<string> {
  if (opts.fromStdin) {
    const pw = await readFirstLine();
    if (pw === "") throw new SecureChatError("password_stdin_empty", "--password-stdin: the first line of stdin is empty");
    return pw;
  }
  const pw = await promptHidden(opts.prompt ?? "Password: ");
  if (opts.confirm && (await promptHidden("Repeat the password: ")) !== pw) {
    throw new SecureChatError("passwords_differ", "the two passwords differ");
  }
  return pw;
}
