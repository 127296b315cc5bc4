/** stdin as lines, for the scripted chat client (and --password-stdin before it). */
export class StdinLines {
  readonly #reader = Bun.stdin.stream().getReader();
  readonly #decoder = new TextDecoder("utf-8");
  #buf = "";
  #eof = false;
  /** No more lines are handed out (the chat is over); a next() still waiting returns null. */
  #stopped = false;
  #reading: Promise<void> | null = null;

  /** Stops reading; an open pipe must not keep the process alive after the chat ended. */
  close(): void {
    this.#stopped = true;
    this.#eof = true;
    this.#buf = "";
    void this.#reader.cancel().catch(() => {});
  }

  /** The next line without its line ending, or null at end of input (or once the chat is over). */
  async next(): Promise<string | null> {
    for (;;) {
      if (this.#stopped) return null;
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl).replace(/\r$/, "");
        this.#buf = this.#buf.slice(nl + 1);
        return line;
      }
      if (this.#eof) {
        if (this.#buf === "") return null;
        const last = this.#buf;
        this.#buf = "";
        return last;
      }
      await this.#read();
    }
  }

  /**
   * After the chat ended early: how much input was never handed out. Takes
   * what is buffered and what arrives within `waitMs`, up to about
   * `maxChars`, counting the lines that are not blank; `eof` says whether
   * that was all of stdin. A next() still waiting gets null, not a line.
   */
  async unread(maxChars: number, waitMs: number): Promise<{ lines: number; eof: boolean }> {
    this.#stopped = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), waitMs)));
    try {
      while (!this.#eof && this.#buf.length < maxChars) {
        if ((await Promise.race([this.#read().then(() => true), late])) === false) break;
      }
    } finally {
      clearTimeout(timer);
    }
    const lines = this.#buf.split("\n").filter((l) => l.trim() !== "").length;
    const eof = this.#eof && this.#buf.length < maxChars;
    this.close();
    return { lines, eof };
  }

  /** One read from stdin into the buffer; concurrent callers share it. */
  #read(): Promise<void> {
    this.#reading ??= this.#reader.read().then(({ value, done }) => {
      this.#reading = null;
      if (value) {
        this.#buf += this.#decoder.decode(value, { stream: true });
        value.fill(0); // the first line may be --password-stdin's password
      }
      if (done) {
        this.#buf += this.#decoder.decode();
        this.#eof = true;
      }
    }, (e: unknown) => {
      this.#reading = null;
      throw e;
    });
    return this.#reading;
  }
}
