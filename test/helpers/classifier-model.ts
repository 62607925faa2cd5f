/**
 * A small real classifier model for tests: trained on the first N messages of the SpamAssassin
 * corpus's spam-1 and easy-ham-1 groups, plus messages it never saw (the next few of each, and
 * hard ham, which scores in the middle and so moves visibly when learned).
 */
import { engineSections, SpamEngine } from '../../classifier/engine/engine.ts';
import { trainEngine } from '../../classifier/engine/train.ts';
import { loadSpamAssassin, type CorpusMessage } from '../../classifier/eval/corpus.ts';
import { encodeModel } from '../../classifier/model/container.ts';
import type { ClassifierConfig } from '../../core/config/classifier.ts';

export interface TestModel {
  /** The encoded container (store.saveModel / a model file). */
  blob: Buffer;
  trained: CorpusMessage[];
  heldOut: { spam: CorpusMessage[]; ham: CorpusMessage[]; hard: CorpusMessage[] };
}

export async function trainTestModel(cfg: ClassifierConfig, perClass: number, heldOut = 10): Promise<TestModel> {
  const spam = await loadSpamAssassin({ groups: ['spam-1'], limitPerGroup: perClass + heldOut });
  const ham = await loadSpamAssassin({ groups: ['easy-ham-1'], limitPerGroup: perClass + heldOut });
  const hard = await loadSpamAssassin({ groups: ['hard-ham-1'], limitPerGroup: 2 * heldOut });
  const trained = [...spam.slice(0, perClass), ...ham.slice(0, perClass)];
  const extractor = await SpamEngine.create(cfg);
  const engine = await trainEngine(cfg, trained.map((m) => ({ features: extractor.features(m.raw), cls: m.label })));
  return {
    blob: encodeModel(engineSections(engine, { source: 'test' })),
    trained,
    heldOut: { spam: spam.slice(perClass), ham: ham.slice(perClass), hard },
  };
}

/** The corpus files start with an mbox "From " line, which is framing, not part of the message. */
export function withoutFromLine(raw: Buffer): Buffer {
  return raw.subarray(0, 5).toString('latin1') === 'From ' ? raw.subarray(raw.indexOf(0x0a) + 1) : raw;
}
