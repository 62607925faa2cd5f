/** Feature extraction: ParsedMessage → MessageFeatures. See extract.ts for the token families. */
export { extractFeatures, CHARS_PER_TOKEN } from './extract.ts';
export { hashToken, HashBuilder, HashSet64 } from './hash.ts';
