/**
 * Getting a password into `ceerion account add|passwd` without it ever being a command-line
 * argument (those show in `ps` and shell history):
 * - readFirstLine: the first line of a stream (`--password-stdin`), without its line end;
 * - promptHidden: typed at a terminal with echo off (raw mode), for interactive use.
 */
import { StringDecoder } from 'node:string_decoder';

/** Thrown when the user interrupts the prompt (Ctrl-C) or ends input (Ctrl-D) before a line. */
export class PasswordInputError extends Error {
  constructor(
    message: string,
    /** Ctrl-C at the prompt: the CLI exits 130, as a shell does on SIGINT. */
    readonly interrupted = false,
  ) {
    super(message);
    this.name = 'PasswordInputError';
  }
}

/** Read no further than this looking for the first line end: stdin is a password, not a file. */
export const MAX_LINE_BYTES = 64 * 1024;

/**
 * The first line of `input` (up to `\n`, a `\r` before it dropped), or all of it when it ends
 * without a line end. Stops reading at the first line end.
 */
export function readFirstLine(input: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let text = '';
    let bytes = 0;
    const finish = (err?: Error): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.pause();
      if (err) return reject(err);
      const nl = text.indexOf('\n');
      resolve((nl < 0 ? text : text.slice(0, nl)).replace(/\r$/, ''));
    };
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      bytes += buf.length;
      text += decoder.write(buf);
      if (text.includes('\n')) return finish();
      if (bytes > MAX_LINE_BYTES) finish(new PasswordInputError(`no line end in the first ${MAX_LINE_BYTES} bytes of standard input`));
    };
    const onEnd = (): void => {
      text += decoder.end();
      finish();
    };
    const onError = (err: Error): void => finish(err);
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.resume();
  });
}

/** What promptHidden needs of a terminal (process.stdin when it is a TTY). */
export interface Terminal extends NodeJS.ReadableStream {
  isTTY?: boolean;
  isRaw?: boolean;
  setRawMode(mode: boolean): unknown;
}

/**
 * Writes `prompt` to `output`, reads one line from the terminal with echo off, and returns it.
 * Backspace deletes a character, Ctrl-U the whole line; Ctrl-C and Ctrl-D (on an empty line)
 * reject with PasswordInputError. Raw mode is restored whatever happens.
 */
export function promptHidden(prompt: string, input: Terminal, output: NodeJS.WritableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const wasRaw = input.isRaw ?? false;
    const decoder = new StringDecoder('utf8');
    let chars: string[] = [];
    // Raw before the prompt shows: whatever is typed once it is visible is never echoed.
    input.setRawMode(true);
    output.write(prompt);
    const finish = (err?: Error): void => {
      input.off('data', onData);
      input.setRawMode(wasRaw);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(chars.join(''));
    };
    const onData = (chunk: Buffer | string): void => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      for (const ch of text) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003') return finish(new PasswordInputError('interrupted', true));
        if (ch === '\u0004') {
          if (chars.length === 0) return finish(new PasswordInputError('no password typed'));
          continue;
        }
        if (ch === '\u007f' || ch === '\b') chars.pop();
        else if (ch === '\u0015') chars = [];
        else chars.push(ch);
      }
    };
    input.on('data', onData);
    input.resume();
  });
}

/** Asks twice; a mismatch is a PasswordInputError. */
export async function promptNewPassword(input: Terminal, output: NodeJS.WritableStream, what: string): Promise<string> {
  const first = await promptHidden(`New password for ${what}: `, input, output);
  const again = await promptHidden('Repeat it: ', input, output);
  if (first !== again) throw new PasswordInputError('the two passwords differ');
  return first;
}
