/**
 * Turns the components' probabilities into one score.
 *
 * Both modes work on log-odds, where independent evidence adds up:
 * - `weighted` is the seed's mix: (1 − w)·bayes + w·reservoir, plus fixed small shares for the
 *   membranes and affect components. No fitting needed; used until a stacker exists.
 * - `stacked` is a logistic regression over the same log-odds columns (plus the auth signals),
 *   fitted by `train` on out-of-fold component scores, so each part gets the weight it earns on
 *   the data and a part that adds nothing gets a weight near zero.
 *
 * Creativity (persona) is the novelty weight: on a message whose tokens Bayes has mostly never
 * seen, Bayes' column is discounted by creativity × novelty, leaving the decision to the parts
 * that generalise (reservoir, membranes). Creativity 0 = Bayes always counts fully.
 */
import type { ComponentScore } from '../types.ts';
import { type LogisticModel, logit, sigmoid } from './logistic.ts';

export const STACK_COLUMNS = ['bayes', 'bayesMean', 'reservoir', 'linear', 'membranes', 'affect', 'authFail', 'authPass'] as const;

export interface CombinerOptions {
  mode: 'stacked' | 'weighted';
  reservoirWeight: number;
  /** Shares of the membranes and affect log-odds in weighted mode. */
  membraneWeight: number;
  affectWeight: number;
  creativity: number;
}

export interface CombineInput {
  components: ComponentScore[];
  /** Share of the message's tokens Bayes has never seen, 0..1. */
  novelty: number;
  auth: { spf?: string; dkim?: string; dmarc?: string };
  /** Bayes' mean token log-odds (engine.bayesMeanLogOdds); 0 when Bayes is off. */
  bayesMean?: number;
}

export interface Combined {
  score: number;
  logOdds: number;
  contributions: Record<string, number>;
  mode: 'stacked' | 'weighted';
}

/** Logits stay within ±LIMIT so one saturated part cannot hide every other (and ranks survive). */
const LIMIT = 25;

export function stackRow(input: CombineInput, creativity: number): number[] {
  const get = (name: string) => {
    const c = input.components.find((s) => s.name === name);
    return c && c.voted ? Math.max(-LIMIT, Math.min(LIMIT, logit(c.probability, 1e-15))) : 0;
  };
  const discount = 1 - creativity * Math.min(1, Math.max(0, input.novelty));
  const a = input.auth;
  const fail = Number(a.spf === 'fail') + Number(a.dkim === 'fail') + Number(a.dmarc === 'fail');
  const pass = Number(a.spf === 'pass') + Number(a.dkim === 'pass') + Number(a.dmarc === 'pass');
  const bayesVoted = input.components.some((c) => c.name === 'bayes' && c.voted);
  const mean = bayesVoted ? (input.bayesMean ?? 0) * discount : 0;
  return [get('bayes') * discount, mean, get('reservoir'), get('linear'), get('membranes'), get('affect'), fail, pass];
}

export class Combiner {
  constructor(
    private readonly opts: CombinerOptions,
    private stacker: LogisticModel | null = null,
  ) {}

  setStacker(model: LogisticModel | null): void {
    this.stacker = model;
  }

  get stackerModel(): LogisticModel | null {
    return this.stacker;
  }

  /** The mode actually used: stacked needs a fitted stacker. */
  get mode(): 'stacked' | 'weighted' {
    return this.opts.mode === 'stacked' && this.stacker ? 'stacked' : 'weighted';
  }

  combine(input: CombineInput): Combined {
    const row = stackRow(input, this.opts.creativity);
    const contributions: Record<string, number> = {};
    let z: number;
    if (this.mode === 'stacked') {
      const m = this.stacker!;
      z = m.weights[0] ?? 0;
      contributions.intercept = z;
      for (let j = 0; j < STACK_COLUMNS.length; j++) {
        const c = (m.weights[j + 1] ?? 0) * (row[j] ?? 0);
        contributions[STACK_COLUMNS[j]!] = c;
        z += c;
      }
    } else {
      const w = this.opts.reservoirWeight;
      const voted = (name: string) => input.components.some((c) => c.name === name && c.voted);
      // If one of the pair abstains, the other takes its whole share.
      const wr = voted('bayes') ? (voted('reservoir') ? w : 0) : 1;
      const terms: Record<string, number> = {
        bayes: (1 - wr) * row[0]!,
        reservoir: wr * row[2]!,
        membranes: this.opts.membraneWeight * row[4]!,
        affect: this.opts.affectWeight * row[5]!,
      };
      z = 0;
      for (const [k, v] of Object.entries(terms)) {
        contributions[k] = v;
        z += v;
      }
    }
    return { score: sigmoid(z), logOdds: z, contributions, mode: this.mode };
  }
}
