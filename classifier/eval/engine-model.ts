/**
 * Our classifier as an evaluation model: each component alone and the combination, as columns.
 * Features are extracted once per message and shared by every fold (they do not depend on the
 * model), so a 5-fold run parses the corpus once.
 */
import type { ClassifierConfig } from '../../core/config/classifier.ts';
import { SpamEngine } from '../engine/engine.ts';
import { scoresWithPooled, trainEngine, type TrainOptions } from '../engine/train.ts';
import type { MessageFeatures } from '../types.ts';
import type { CorpusMessage } from './corpus.ts';
import type { EvalModelFactory } from './runner.ts';

export interface EngineModelOptions extends TrainOptions {
  cfg: ClassifierConfig;
  /** Columns to report besides `combined` (component names). */
  components?: string[];
}

export function engineModel(opts: EngineModelOptions): EvalModelFactory {
  let extractor: SpamEngine | undefined;
  const cache = new Map<string, MessageFeatures>();
  const features = async (m: CorpusMessage) => {
    extractor ??= await SpamEngine.create(opts.cfg);
    let f = cache.get(m.id);
    if (!f) cache.set(m.id, (f = extractor.features(m.raw)));
    return f;
  };
  return async () => {
    let engine: SpamEngine | undefined;
    return {
      async train(msgs) {
        const samples = [];
        for (const m of msgs) samples.push({ features: await features(m), cls: m.label });
        engine = await trainEngine(opts.cfg, samples, opts);
      },
      async score(m) {
        if (!engine) throw new Error('engine model scored before training');
        const f = await features(m);
        const pooled = engine.parts.reservoir?.pool(f);
        const components = pooled ? scoresWithPooled(engine, f, pooled) : engine.componentScores(f);
        const out: Record<string, number> = {};
        for (const c of components) if (!opts.components || opts.components.includes(c.name)) out[c.name] = c.probability;
        out.combined = engine.combiner.combine(engine.combineInput(f, components)).score;
        return out;
      },
    };
  };
}
