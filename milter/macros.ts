/**
 * The macros an MTA has sent on one connection. They accumulate across stages (a new packet for a
 * stage adds to it, it does not rebuild anything) and are looked up newest stage first, as
 * libmilter's smfi_getsymval does. Connection-level stages survive the end of a message.
 */
import { Cmd } from './protocol/constants.ts';

const LOOKUP_ORDER = [Cmd.BODYEOB, Cmd.EOH, Cmd.HEADER, Cmd.DATA, Cmd.RCPT, Cmd.MAIL, Cmd.HELO, Cmd.CONNECT];
const CONNECTION_STAGES = new Set<number>([Cmd.CONNECT, Cmd.HELO]);

export class MacroStore {
  private readonly stages = new Map<number, Map<string, string>>();

  /** Add a macro packet's pairs to the stage of the command it precedes. */
  add(forCommand: number, pairs: ReadonlyArray<readonly [string, string]>): void {
    let stage = this.stages.get(forCommand);
    if (!stage) this.stages.set(forCommand, (stage = new Map()));
    for (const [name, value] of pairs) stage.set(name, value);
  }

  get(name: string): string | undefined {
    for (const stage of LOOKUP_ORDER) {
      const v = this.stages.get(stage)?.get(name);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /** The message is over: drop its stages, keep CONNECT and HELO. */
  endMessage(): void {
    for (const stage of [...this.stages.keys()]) if (!CONNECTION_STAGES.has(stage)) this.stages.delete(stage);
  }

  clear(): void {
    this.stages.clear();
  }
}
