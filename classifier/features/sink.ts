/**
 * Where tokens go while one message is read: the unique-token set (with the readable form when
 * debugging), and the body sequence grouped into steps. One instance is reused for every message
 * (reset() costs the tokens of the previous message, not the table size); extractFeatures is
 * synchronous, so sharing it is safe.
 */
import { begin, finish, HashBuilder, HashSet64, hs, update } from './hash.ts';

/** Tokens per reservoir step, and steps per message (the contract's caps). */
export const STEP_TOKENS = 16;
export const MAX_STEPS = 128;

export class TokenSink {
  readonly set = new HashSet64(2048);
  readonly tokens = new HashBuilder(4096);
  readonly seq = new HashBuilder(2048);
  steps: number[] = [];
  debug: string[] | null = null;
  /** Sequence cap (pairs), set per message. */
  maxSeq = 0;
  private stepFill = 0;
  private breakPending = false;

  reset(debug: boolean, maxSeq: number): void {
    this.set.clear();
    this.tokens.reset();
    this.seq.reset();
    this.steps = [];
    this.debug = debug ? [] : null;
    this.maxSeq = Math.min(maxSeq, STEP_TOKENS * MAX_STEPS);
    this.stepFill = 0;
    this.breakPending = false;
  }

  /** Add the token in hs.hi/hs.lo to the unique set; `text` is its readable form (debug only). */
  add(text?: string): void {
    if (this.set.add(hs.hi, hs.lo)) {
      this.tokens.push(hs.hi, hs.lo);
      if (this.debug !== null) this.debug.push(text ?? '?');
    }
  }

  /**
   * Add the token a + b. Hashed in two pieces: a concatenation of 13 or more characters would be a
   * rope, slow to read character by character, and the string is only built when debugging.
   */
  tok(a: string, b = ''): void {
    begin();
    update(a, 0, a.length);
    update(b, 0, b.length);
    finish();
    this.add(this.debug !== null ? a + b : undefined);
  }

  /** Append hs.hi/hs.lo to the reading-order sequence, opening a new step when due. */
  addSeq(): void {
    if (this.seq.count >= this.maxSeq) return;
    if (this.stepFill === 0 || this.breakPending || this.stepFill >= STEP_TOKENS) {
      if (this.steps.length >= MAX_STEPS) {
        this.maxSeq = this.seq.count; // steps are full: the sequence ends here
        return;
      }
      this.steps.push(this.seq.count);
      this.stepFill = 0;
      this.breakPending = false;
    }
    this.seq.push(hs.hi, hs.lo);
    this.stepFill++;
  }

  /** End the current step at a sentence or paragraph end (no-op when it is empty). */
  breakStep(): void {
    if (this.stepFill > 0) this.breakPending = true;
  }
}
