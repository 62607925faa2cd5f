/**
 * The classifier as the rest of the suite sees it: raw message in, score and verdict out, plus
 * learning and (de)serialisation. It owns one instance of each enabled component and the combiner,
 * and applies the persona traits that are not the affect component's own:
 * - attention scales the body words read: maxBodyTokens × (0.5 + attention);
 * - memory sets the forgetting of online learning: Bayes counts decay by 1 − (1 − memory)·1e-3
 *   per learned message (memory 1 = never forget; 0.7 = half-life of ≈2,300 learns);
 * - creativity is the combiner's novelty weight (combine/combiner.ts).
 * Valence, arousal and dominance go to the affect component (affect/extract.ts).
 */
import { fileURLToPath } from 'node:url';
import { PRESETS, type ClassifierConfig } from '../../core/config/classifier.ts';
import { AffectComponent } from '../affect/index.ts';
import { BayesFilter } from '../bayes/bayes.ts';
import { Combiner } from '../combine/combiner.ts';
import type { LogisticModel } from '../combine/logistic.ts';
import { ReservoirComponent } from '../esn/esn.ts';
import { LinearComponent } from '../linear/linear.ts';
import { extractFeatures } from '../features/index.ts';
import { loadRules, MembraneComponent } from '../membranes/index.ts';
import { parseMessage } from '../mime/index.ts';
import type { Classification, ComponentScore, FeatureOptions, MailClass, MessageFeatures, ParseLimits, SpamVerdict } from '../types.ts';

export interface EngineParts {
  bayes?: BayesFilter;
  reservoir?: ReservoirComponent;
  linear?: LinearComponent;
  membranes?: MembraneComponent;
  affect?: AffectComponent;
  stacker?: LogisticModel | null;
}

/** Bayes forgetting per learned message for a Memory trait value. */
export const forgettingFor = (memory: number): number => 1 - (1 - memory) * 1e-3;

/** Body words read for an Attention trait value. */
export const bodyTokensFor = (base: number, attention: number): number => Math.max(16, Math.round(base * (0.5 + attention)));

export function reservoirSettings(cfg: ClassifierConfig) {
  const p = PRESETS[cfg.preset];
  const r = cfg.reservoir;
  return {
    reservoirWeight: cfg.reservoirWeight ?? p.reservoirWeight,
    reservoirSize: r.reservoirSize ?? p.reservoirSize,
    spectralRadius: r.spectralRadius ?? p.spectralRadius,
    leakRate: r.leakRate ?? p.leakRate,
    treeDepth: r.treeDepth ?? p.treeDepth,
  };
}

export function rulesPath(cfg: ClassifierConfig): string {
  return cfg.membranes.rulesFile || fileURLToPath(new URL('../membranes/rules.yaml', import.meta.url));
}

export class SpamEngine {
  readonly limits: ParseLimits;
  readonly featureOptions: FeatureOptions;
  readonly combiner: Combiner;

  constructor(
    readonly cfg: ClassifierConfig,
    readonly parts: EngineParts,
  ) {
    const f = cfg.features;
    this.limits = { maxBytes: f.maxBytes, maxHeaderBytes: f.maxHeaderBytes, maxParts: f.maxParts, maxDepth: f.maxDepth };
    this.featureOptions = {
      onegrams: f.onegrams,
      twograms: f.twograms,
      threegrams: f.threegrams,
      maxBodyTokens: bodyTokensFor(f.maxBodyTokens, cfg.persona.attention),
      maxTextChars: f.maxTextChars,
    };
    const s = reservoirSettings(cfg);
    this.combiner = new Combiner(
      { mode: cfg.mode, reservoirWeight: s.reservoirWeight, membraneWeight: 0.15, affectWeight: 0.05, creativity: cfg.persona.creativity },
      parts.stacker ?? null,
    );
  }

  /** A fresh, untrained engine with every enabled component. */
  static async create(cfg: ClassifierConfig): Promise<SpamEngine> {
    return new SpamEngine(cfg, await SpamEngine.freshParts(cfg));
  }

  /**
   * `online` = parts for learning one message at a time (Bayes forgets per the Memory trait);
   * batch training leaves forgetting off, or the first messages of a corpus would count less.
   */
  static async freshParts(cfg: ClassifierConfig, online = true): Promise<EngineParts> {
    const s = reservoirSettings(cfg);
    const parts: EngineParts = {};
    if (cfg.bayes.enabled) {
      const { enabled: _e, ...b } = cfg.bayes;
      parts.bayes = new BayesFilter(online ? { ...b, forgetting: forgettingFor(cfg.persona.memory) } : b);
    }
    if (cfg.reservoir.enabled) {
      const r = cfg.reservoir;
      parts.reservoir = new ReservoirComponent({
        reservoirSize: s.reservoirSize,
        spectralRadius: s.spectralRadius,
        leakRate: s.leakRate,
        treeDepth: s.treeDepth,
        inputScaling: r.inputScaling,
        density: r.density,
        seed: r.seed,
        ridge: r.ridge,
        minLearned: r.minLearned,
      });
    }
    if (cfg.linear.enabled) {
      const { enabled: _e, ...l } = cfg.linear;
      parts.linear = new LinearComponent(l);
    }
    if (cfg.membranes.enabled) parts.membranes = new MembraneComponent({ rules: await loadRules(rulesPath(cfg)) });
    if (cfg.affect.enabled) parts.affect = new AffectComponent({ persona: cfg.persona, minLearned: cfg.affect.minLearned });
    return parts;
  }

  /** Parse and extract, within the configured caps whatever the input. */
  features(raw: Buffer, debug = false): MessageFeatures {
    return extractFeatures(parseMessage(raw, this.limits), { ...this.featureOptions, debug });
  }

  /** Share of the message's tokens Bayes has never seen (the novelty signal). */
  novelty(f: MessageFeatures): number {
    const b = this.parts.bayes;
    if (!b || f.tokens.length === 0) return 0;
    let unseen = 0;
    for (let i = 0; i < f.tokens.length; i += 2) if (b.table.find(f.tokens[i]!, f.tokens[i + 1]!) < 0) unseen++;
    return unseen / (f.tokens.length / 2);
  }

  /** The enabled components, in reporting order. */
  components() {
    const p = this.parts;
    return [p.bayes, p.reservoir, p.linear, p.membranes, p.affect].filter((c) => c !== undefined);
  }

  componentScores(f: MessageFeatures): ComponentScore[] {
    return this.components().map((c) => c.score(f));
  }

  /**
   * Bayes' evidence as the mean log-odds of its token probabilities: Fisher's combining saturates
   * at 0.5 on long messages with strong tokens both ways, while this keeps ranking them. The
   * stacker gets both.
   */
  bayesMeanLogOdds(f: MessageFeatures): number {
    const b = this.parts.bayes;
    if (!b || f.tokens.length === 0) return 0;
    let sum = 0;
    for (let i = 0; i < f.tokens.length; i += 2) {
      const p = Math.min(1 - 1e-6, Math.max(1e-6, b.tokenProbability(f.tokens[i]!, f.tokens[i + 1]!)));
      sum += Math.log(p / (1 - p));
    }
    return sum / (f.tokens.length / 2);
  }

  combineInput(f: MessageFeatures, components: ComponentScore[]) {
    return { components, novelty: this.novelty(f), auth: f.auth, bayesMean: this.bayesMeanLogOdds(f) };
  }

  classifyFeatures(f: MessageFeatures, started = performance.now()): Classification {
    const components = this.componentScores(f);
    const c = this.combiner.combine(this.combineInput(f, components));
    // A model that has learned from no mail yet has no opinion, and such mail is never junked: the
    // membranes vote from their authored rules alone, which is not enough to junk on.
    const voted = components.some((p) => p.voted && p.name !== 'membranes');
    return { score: c.score, verdict: voted ? this.verdictOf(c.score) : 'inbox', components, contributions: c.contributions, ms: performance.now() - started };
  }

  classify(raw: Buffer): Classification {
    const started = performance.now();
    return this.classifyFeatures(this.features(raw), started);
  }

  verdictOf(score: number): SpamVerdict {
    const t = this.cfg.thresholds;
    return score > t.reject ? 'reject' : score >= t.junk ? 'junk' : 'inbox';
  }

  /** Online learning of one message (weight −1 unlearns it, for a class change). */
  learn(f: MessageFeatures, cls: MailClass, weight: 1 | -1 = 1): void {
    // The reservoir's readout re-solves lazily (every few learns), not per message.
    for (const c of this.components()) c.learn(f, cls, weight);
  }
}

/** Section names inside a model container (classifier/model/container.ts). */
export const SECTIONS = { meta: 'meta', bayes: 'bayes', reservoir: 'reservoir', linear: 'linear', membranes: 'membranes', affect: 'affect', stacker: 'stacker' } as const;

/** The engine's state as named binary sections, for the model container. */
export function engineSections(engine: SpamEngine, meta: Record<string, unknown> = {}): Map<string, Buffer> {
  const p = engine.parts;
  const out = new Map<string, Buffer>();
  out.set(SECTIONS.meta, Buffer.from(JSON.stringify({ format: 1, mode: engine.combiner.mode, createdAt: new Date().toISOString(), ...meta })));
  if (p.bayes) out.set(SECTIONS.bayes, p.bayes.serialize());
  if (p.reservoir) out.set(SECTIONS.reservoir, p.reservoir.serialize());
  if (p.linear) out.set(SECTIONS.linear, p.linear.serialize());
  if (p.membranes) out.set(SECTIONS.membranes, p.membranes.serialize());
  if (p.affect) out.set(SECTIONS.affect, p.affect.serialize());
  const stacker = engine.combiner.stackerModel;
  if (stacker) out.set(SECTIONS.stacker, Buffer.from(JSON.stringify(stacker)));
  return out;
}

/**
 * An engine from stored sections, for online use (Bayes forgets per the Memory trait). A component
 * the config enables but the model lacks starts fresh; one the config disables is left out.
 */
export async function engineFromSections(cfg: ClassifierConfig, sections: Map<string, Buffer>): Promise<SpamEngine> {
  const fresh = await SpamEngine.freshParts(cfg, true);
  const get = (name: string) => sections.get(name);
  const parts: EngineParts = {};
  if (fresh.bayes) {
    const b = get(SECTIONS.bayes);
    const { enabled: _e, ...opts } = cfg.bayes;
    parts.bayes = b ? BayesFilter.deserialize(b, { ...opts, forgetting: forgettingFor(cfg.persona.memory) }) : fresh.bayes;
  }
  if (fresh.reservoir) {
    const r = get(SECTIONS.reservoir);
    parts.reservoir = r ? ReservoirComponent.deserialize(r) : fresh.reservoir;
  }
  if (fresh.linear) {
    const l = get(SECTIONS.linear);
    parts.linear = l ? LinearComponent.deserialize(l, fresh.linear.options) : fresh.linear;
  }
  if (fresh.membranes) {
    const m = get(SECTIONS.membranes);
    if (m) fresh.membranes.restore(m);
    parts.membranes = fresh.membranes;
  }
  if (fresh.affect) {
    const a = get(SECTIONS.affect);
    if (a) fresh.affect.restore(a);
    parts.affect = fresh.affect;
  }
  const s = get(SECTIONS.stacker);
  parts.stacker = s ? (JSON.parse(s.toString('utf8')) as LogisticModel) : null;
  return new SpamEngine(cfg, parts);
}
