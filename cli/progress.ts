/**
 * A progress line for long CLI jobs (training, evaluation): done/total, rate and ETA on stderr.
 * On a terminal it redraws one line (at most 10 times a second); in a pipe or a log file, where
 * carriage returns would pile up, it writes a plain line at each tenth and at the end.
 */

export interface ProgressOutput {
  write(s: string): unknown;
  isTTY?: boolean;
}

const BAR = 24;

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.round(s % 60)).padStart(2, '0')} min`;
}

export class Progress {
  private readonly started = performance.now();
  private lastDraw = 0;
  private lastTenth = -1;
  private done = 0;
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = 'msgs',
    private readonly out: ProgressOutput = process.stderr,
  ) {
    this.update(0);
  }

  update(done: number): void {
    if (this.finished) return;
    this.done = done;
    if (this.out.isTTY) {
      const now = performance.now();
      if (now - this.lastDraw < 100 && done < this.total) return;
      this.lastDraw = now;
      this.out.write(`\r${this.line(true)}\x1b[K`);
    } else {
      const tenth = this.total > 0 ? Math.floor((10 * done) / this.total) : 10;
      if (tenth === this.lastTenth) return;
      this.lastTenth = tenth;
      this.out.write(`${this.line(false)}\n`);
    }
  }

  /** The closing line (always written, so the final count and time are on record). */
  finish(done = this.done): void {
    if (this.finished) return;
    this.done = done;
    if (this.out.isTTY) this.out.write(`\r${this.line(true)}\x1b[K\n`);
    else if (this.total <= 0 || Math.floor((10 * done) / this.total) !== this.lastTenth) this.out.write(`${this.line(false)}\n`);
    this.finished = true;
  }

  /** The work is all done (a stage whose last step is not reported on its own). */
  complete(): void {
    this.finish(this.total);
  }

  /** Seconds since the bar was made. */
  get seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  private line(bar: boolean): string {
    const secs = this.seconds;
    const share = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const rate = secs > 0 ? this.done / secs : 0;
    const eta = this.done >= this.total ? `took ${formatSeconds(secs)}` : `ETA ${formatSeconds(rate > 0 ? (this.total - this.done) / rate : Infinity)}`;
    const filled = Math.round(share * BAR);
    const drawn = bar ? ` [${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}]` : ':';
    return `${this.label}${drawn} ${this.done}/${this.total} (${Math.round(share * 100)}%), ${rate.toFixed(rate < 10 ? 1 : 0)} ${this.unit}/s, ${eta}`;
  }
}
