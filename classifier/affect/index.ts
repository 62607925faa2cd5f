/** The affect component (emotion lexicon features). See README.md. */
export { AffectComponent } from './component.ts';
export type { AffectComponentOptions, AffectFitOptions, AffectState, LabelledFeatures } from './component.ts';
export { AFFECT_FEATURES, DEFAULT_PERSONA, extractAffect, normalizePersona } from './extract.ts';
export type { AffectFeature, AffectOptions, AffectVector, Persona } from './extract.ts';
export { EMOTIONS, LEXICON, SEED_LEXICON } from './lexicon.ts';
export type { Emotion, LexEntry } from './lexicon.ts';
export { columnVariance, smoothPath } from './smoothing.ts';
