/** stdin as lines, for the scripted chat client (and --password-stdin before it). */
export class StdinLines {
  readonly #reader = Bun.stdin.stream().getReader();
  readonly #decoder = new TextDecoder("utf-8");
  #buf = "";
  #eof = false;

  /** Stops reading; an open pipe must not keep the process alive after the chat ended. */
  close(): void {
    this.#eof = true;
    this.#buf = "";
    void this.#reader.cancel().catch(() => {});
  }

  /** The next line without its line ending, or null at end of input. */
  async next(): Promise<string | null> {
    for (;;) {
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
      const { value, done } = await this.#reader.read();
      if (value) {
        this.#buf += this.#decoder.decode(value, { stream: true });
        value.fill(0); // the first line may be --password-stdin's password
      }
      if (done) {
        this.#buf += this.#decoder.decode();
        this.#eof = true;
      }
    }
  }
}
