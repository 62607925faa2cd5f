/**
 * The reservoir classifier's verdict on inbound mail.
 *
 * The body is buffered only up to the classifier's read cap (classifier.features.maxBytes): the
 * classifier never reads past it, so a 50 MB message costs the same as a 256 KB one. At end of
 * message the header block (with the Authentication-Results our auth check just added, so the
 * classifier sees this hop's SPF/DKIM/DMARC) and the body prefix are scored, and:
 * - X-Spam-Score, X-Spam-Status (Yes/No, score, components) and, at Junk or worse, X-Spam-Flag:
 *   YES are added; the Junk Sieve rule keys on X-Spam-Flag. Copies of these headers that arrived
 *   with the message are deleted first (highest index down): a sender cannot pre-mark its mail.
 * - Above the reject threshold: 550 5.7.1 with the reference id (if milter.reject is on).
 * - A failing classifier: with classifier.milter.onError `accept` (the default) the check itself
 *   lets the message pass unscored, logging the error with the queue id, and still deletes the
 *   forged copies of our headers (had it thrown, the pipeline would have dropped those deletions
 *   with the rest of its result). `tempfail` / `reject` throw, and the pipeline refuses the message.
 * Authenticated submissions and local (unix-socket) senders are not scored: it is our users' mail.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { ClassifierConfig } from '../../core/config/schema.ts';
import type { Classification } from '../../classifier/types.ts';
import { deleteHeaders, rawHeaderBlock, type HeaderField } from '../headers.ts';
import type { Modification } from '../protocol/responses.ts';
import { Action } from '../protocol/constants.ts';
import { buildReplyCode } from '../protocol/replycode.ts';
import { stateOf } from './message-stream.ts';
import type { Check, CheckResult } from './types.ts';

const NAME = 'spam';
const OUR_HEADERS = ['X-Spam-Score', 'X-Spam-Status', 'X-Spam-Flag'];

/** Whatever scores a raw message with the current model (classifier/runtime.ts in the service). */
export interface SpamScorer {
  classify(raw: Buffer): Classification;
}

export interface SpamCheckDeps {
  scorer: SpamScorer;
  registry?: Registry;
}

interface Collected {
  chunks: Buffer[];
  bytes: number;
}

function metricsOf(registry: Registry | undefined) {
  if (!registry) return undefined;
  const total =
    (registry.getSingleMetric('reservoir_classify_total') as Counter<'verdict'> | undefined) ??
    new Counter({ name: 'reservoir_classify_total', help: 'Messages classified, by verdict (inbox, junk, reject, error, skipped)', labelNames: ['verdict'], registers: [registry] });
  const seconds =
    (registry.getSingleMetric('reservoir_classify_duration_seconds') as Histogram | undefined) ??
    new Histogram({
      name: 'reservoir_classify_duration_seconds',
      help: 'Time to classify one message, parse included',
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1],
      registers: [registry],
    });
  // The score distribution shows drift and how close ham runs to the junk and reject thresholds:
  // a bulge just under junk=0.3 or reject=0.8 is the cue to look before users complain.
  const scores =
    (registry.getSingleMetric('reservoir_classify_score') as Histogram | undefined) ??
    new Histogram({
      name: 'reservoir_classify_score',
      help: 'Spam score of each classified message (0 ham … 1 spam)',
      buckets: [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99],
      registers: [registry],
    });
  return { total, seconds, scores };
}

export function spamCheck(cfg: Pick<ClassifierConfig, 'milter' | 'thresholds' | 'features'>, deps: SpamCheckDeps): Check {
  const metrics = metricsOf(deps.registry);
  const cap = cfg.features.maxBytes;

  return {
    name: NAME,
    timeoutMs: cfg.milter.timeoutMs,
    onError: cfg.milter.onError,
    // Declared here, not left to the trace check: with the trace header off we still add and delete.
    actions: Action.ADDHDRS | Action.CHGHDRS,
    wantsConnection: true,
    // {auth_authen} arrives with MAIL: without the envelope stage, Postfix would never send it and
    // our users' authenticated submissions would be scored as inbound mail.
    wantsEnvelope: true,
    wantsHeaders: true,
    wantsBody: true,

    body(ctx, chunk) {
      const c = stateOf<Collected>(ctx.message, NAME, () => ({ chunks: [], bytes: 0 }));
      if (c.bytes >= cap) return;
      const part = c.bytes + chunk.length > cap ? chunk.subarray(0, cap - c.bytes) : chunk;
      // Copy: the session may reuse the frame buffer once this callback returns.
      c.chunks.push(Buffer.from(part));
      c.bytes += part.length;
    },

    endOfMessage(ctx): CheckResult {
      const m = ctx.message;
      const forged = OUR_HEADERS.flatMap((h) => deleteHeaders(m.headers, h));
      const info = m.connection.info;
      const skipped = m.macro('{auth_authen}')
        ? 'authenticated client'
        : !info || info.family === 'L' || info.family === 'U'
          ? 'local submission'
          : undefined;
      if (skipped) {
        metrics?.total.inc({ verdict: 'skipped' });
        return { modifications: forged, summary: `skipped (${skipped})` };
      }
      const c = (m.checkState.get(NAME) as Collected | undefined) ?? { chunks: [], bytes: 0 };
      const raw = Buffer.concat([rawHeaderBlock(withAddedTraceHeaders(m.headers, ctx.modifications)), ...c.chunks]);
      const started = performance.now();
      let r: Classification;
      try {
        r = deps.scorer.classify(raw);
      } catch (err) {
        metrics?.total.inc({ verdict: 'error' });
        if (cfg.milter.onError !== 'accept') throw err;
        ctx.log.warn({ check: NAME, ref: m.messageId, err: (err as Error).message, onError: 'accept' }, 'classifier failed; message passes unscored');
        return { modifications: forged, summary: 'error (unscored)' };
      }
      metrics?.seconds.observe((performance.now() - started) / 1000);
      metrics?.scores.observe(r.score);
      const reject = r.verdict === 'reject' && cfg.milter.reject;
      const verdict = reject ? 'reject' : r.verdict === 'inbox' ? 'inbox' : 'junk';
      metrics?.total.inc({ verdict });
      const parts = r.components.filter((p) => p.voted).map((p) => `${p.name}=${p.probability.toFixed(3)}`);
      ctx.log.info({ check: NAME, ref: m.messageId, score: round(r.score), verdict, ms: round(r.ms) }, 'classified');
      if (reject) {
        return {
          verdict: { kind: 'replycode', reply: buildReplyCode(550, '5.7.1', `Message refused as spam (ref ${m.messageId})`) },
          summary: `spam ${r.score.toFixed(3)} rejected`,
        };
      }
      const junk = verdict === 'junk';
      const mods: Modification[] = [
        ...forged,
        { kind: 'addheader', name: 'X-Spam-Score', value: r.score.toFixed(4) },
        {
          kind: 'addheader',
          name: 'X-Spam-Status',
          value: `${junk ? 'Yes' : 'No'}, score=${r.score.toFixed(4)} junk=${cfg.thresholds.junk} reject=${cfg.thresholds.reject}\n\t${parts.join(' ') || 'no components voted'}`,
        },
      ];
      if (junk) mods.push({ kind: 'addheader', name: 'X-Spam-Flag', value: 'YES' });
      return { modifications: mods, summary: `spam=${r.score.toFixed(3)} ${verdict}` };
    },

    abort(message) {
      message.checkState.delete(NAME);
    },
  };
}

/** Headers earlier checks are inserting at the top (our Authentication-Results), then the message's. */
function withAddedTraceHeaders(headers: readonly HeaderField[], mods: readonly Modification[]): HeaderField[] {
  const added: HeaderField[] = [];
  for (const mod of mods) if (mod.kind === 'insheader' && mod.index === 0) added.unshift({ name: mod.name, value: mod.value });
  return [...added, ...headers];
}

const round = (n: number) => Math.round(n * 10000) / 10000;
