/**
 * The end-of-message answer as bytes: every modification, then the verdict, in one buffer so it
 * leaves in one write (one TCP segment: nothing for Nagle and delayed ACK to stall on).
 */
import { Proto } from './protocol/constants.ts';
import { ACTION_FOR, type Negotiated } from './protocol/negotiate.ts';
import { encodeResponse, type Modification, type Response, type Verdict } from './protocol/responses.ts';

export interface EncodedEndOfMessage {
  bytes: Buffer;
  /** Modifications the MTA did not allow in negotiation: left out (the caller logs them). */
  dropped: Modification[];
}

export function encodeEndOfMessage(mods: readonly Modification[], verdict: Verdict, negotiated: Negotiated): EncodedEndOfMessage {
  const frames: Buffer[] = [];
  const dropped: Modification[] = [];
  const leadSpace = (negotiated.protocol & Proto.HDR_LEADSPC) !== 0;
  for (const m of mods) {
    const needed = ACTION_FOR[m.kind] ?? 0;
    if ((negotiated.actions & needed) !== needed) {
      dropped.push(m);
      continue;
    }
    let mod: Response = m;
    // With HDR_LEADSPC the MTA copies the value verbatim after the colon, so we supply the space.
    if (leadSpace && 'value' in m && m.value !== '' && !/^[ \t]/.test(m.value)) mod = { ...m, value: ` ${m.value}` };
    frames.push(encodeResponse(mod));
  }
  // `continue` at end of message means: nothing to object to, i.e. accept.
  frames.push(encodeResponse(verdict.kind === 'continue' ? { kind: 'accept' } : verdict));
  return { bytes: frames.length === 1 ? frames[0]! : Buffer.concat(frames), dropped };
}
