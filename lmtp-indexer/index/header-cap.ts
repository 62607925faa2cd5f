/** The root header block of a message, cut to a byte budget on the raw bytes (see parse.ts). */

/**
 * Cuts the root header block at maxBytes: whole header lines that fit are passed on, the rest of
 * the block is skipped up to the empty line, and the body passes untouched.
 */
export class HeaderCap {
  private state: 'head' | 'skip' | 'body' = 'head';
  private used = 0;
  /** The current line: its pieces (head only), length, and first two bytes (is it the empty line?). */
  private line: Buffer[] = [];
  private lineLen = 0;
  private lineHead: number[] = [];
  cut = false;
  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): Buffer[] {
    if (this.state === 'body') return [chunk];
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length && this.state !== 'body') {
      const nl = chunk.indexOf(0x0a, pos);
      const end = nl === -1 ? chunk.length : nl + 1;
      const piece = chunk.subarray(pos, end);
      pos = end;
      for (let i = 0; i < piece.length && this.lineHead.length < 2; i++) this.lineHead.push(piece[i]!);
      this.lineLen += piece.length;
      if (this.state === 'head') {
        this.line.push(piece);
        if (this.used + this.lineLen > this.maxBytes) {
          // This line does not fit: it and the rest of the block are skipped.
          this.state = 'skip';
          this.cut = true;
          this.line = [];
        }
      }
      if (nl === -1) continue;
      const blank = this.lineLen === 1 || (this.lineLen === 2 && this.lineHead[0] === 0x0d);
      if (this.state === 'head') {
        out.push(...this.line);
        this.used += this.lineLen;
      } else if (blank) out.push(Buffer.from('\r\n'));
      if (blank) this.state = 'body';
      this.line = [];
      this.lineLen = 0;
      this.lineHead = [];
    }
    if (pos < chunk.length) out.push(chunk.subarray(pos));
    return out;
  }

  /** What is left at the end of input: an unterminated last header line that fits. */
  end(): Buffer[] {
    return this.state === 'head' ? this.line : [];
  }
}
