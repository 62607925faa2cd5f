/**
 * The rules file's shape (zod). Everything a rule author can write is declared here, with
 * defaults, so the compiler only ever sees complete, typed values. Errors name the dotted path of
 * the bad key ("membranes.spamWords.rules.2.when.0.count: …") because a rules file is edited by
 * hand and "invalid input" alone sends the author hunting.
 */
import { z, type ZodError } from 'zod';

/** Identifiers double as signal names in `details` and in learned state, so keep them tame. */
const ident = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'expected an identifier (letters, digits, _ . -)');
const finite = z.number().finite();
const unit = z.number().min(0).max(1);

/** What a receptor puts into its membrane: `max` objects at most, each with this charge. */
const emit = z
  .object({
    type: ident,
    /** Defaults to the receptor's id, so rules can match one receptor's objects by value. */
    value: ident.optional(),
    charge: finite.default(0),
  })
  .strict();

const textFields = z.array(z.enum(['text', 'subject'])).nonempty().default(['text', 'subject']);

const receptorBase = {
  id: ident,
  description: z.string().optional(),
  emit,
  /** Objects emitted at most (occurrences beyond this are ignored, as SpamAssassin counts a hit once). */
  max: z.number().int().min(1).max(64).default(1),
};

const comparators = { gt: finite.optional(), gte: finite.optional(), lt: finite.optional(), lte: finite.optional() };

const receptorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('words'), ...receptorBase, in: textFields, words: z.array(z.string().min(1)).nonempty() }).strict(),
  z
    .object({
      kind: z.literal('regex'),
      ...receptorBase,
      in: textFields,
      pattern: z.string().min(1),
      flags: z.string().regex(/^[imsu]*$/, 'flags may hold only i, m, s, u').default('i'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('auth'),
      ...receptorBase,
      method: z.enum(['spf', 'dkim', 'dmarc', 'arc']),
      results: z.array(z.string().min(1)).nonempty(),
    })
    .strict(),
  z.object({ kind: z.literal('fact'), ...receptorBase, fact: z.string().min(1), ...comparators }).strict(),
  z
    .object({
      kind: z.literal('domains'),
      ...receptorBase,
      of: z.enum(['fromDomain', 'replyToDomain', 'urlDomains']),
      domains: z.array(z.string().min(1)).nonempty(),
    })
    .strict(),
  z
    .object({
      kind: z.literal('attachment'),
      ...receptorBase,
      types: z.array(z.string().min(1)).default([]),
      extensions: z.array(z.string().min(1)).default([]),
    })
    .strict(),
  z
    .object({
      kind: z.literal('reputation'),
      ...receptorBase,
      of: z.enum(['fromDomain', 'replyToDomain', 'urlDomains', 'urlIpHosts']),
      scale: finite.default(1),
    })
    .strict(),
]);

/** One element of a rule's left-hand side (a multiset requirement). */
const patternSchema = z
  .object({
    type: ident,
    value: ident.optional(),
    /** Objects consumed (or, with keep, required) per application. */
    count: z.number().int().min(1).max(64).default(1),
    /** Threshold: at least this many matching objects must be present for the rule to fire at all. */
    min: z.number().int().min(1).max(1024).optional(),
    /** Catalyst: required but not consumed. */
    keep: z.boolean().default(false),
    /** Inhibitor: the rule is blocked while any matching object is present. */
    absent: z.boolean().default(false),
    /** Only objects whose own charge passes these comparisons match. */
    charge: z.object(comparators).strict().optional(),
  })
  .strict();

const productSchema = z
  .object({
    type: ident,
    value: ident.optional(),
    /** A number, or {sum: k}: k × the summed charge of the objects this application consumed. */
    charge: z.union([finite, z.object({ sum: finite }).strict()]).default(0),
  })
  .strict();

const ruleSchema = z
  .object({
    id: ident,
    description: z.string().optional(),
    /** Higher first; rules of equal priority keep file order. */
    priority: z.number().int().default(0),
    when: z.array(patternSchema).nonempty(),
    produce: z.array(productSchema).default([]),
    /** Applications per message (across all steps). 'unbounded' is still capped by maxSteps and maxObjects. */
    maxApplications: z.union([z.number().int().min(1), z.literal('unbounded')]).default(1),
    /** δ: after the step in which this rule fires, the membrane dissolves into its parent. */
    dissolve: z.boolean().default(false),
  })
  .strict();

const permeabilitySchema = z.union([
  unit,
  z.object({ default: unit.default(1), types: z.record(ident, unit).default({}) }).strict(),
]);

const membraneSchema = z
  .object({
    description: z.string().optional(),
    /** Every membrane but the skin names its parent; the one without a parent is the skin. */
    parent: ident.optional(),
    permeability: permeabilitySchema.default(1),
    receptors: z.array(receptorSchema).default([]),
    rules: z.array(ruleSchema).default([]),
  })
  .strict();

export const rulesFileSchema = z
  .object({
    version: z.literal(1),
    description: z.string().optional(),
    maxSteps: z.number().int().min(1).max(64).default(4),
    /** Per-membrane cap on objects; rule applications stop at it, so runaway rules stay bounded. */
    maxObjects: z.number().int().min(8).max(65536).default(256),
    gain: finite.default(1),
    bias: finite.default(0),
    /** Initial reputation map, domain (or IP) → charge; MembraneComponent.setReputation adds to it. */
    reputation: z.record(z.string().min(1), finite).default({}),
    membranes: z.record(ident, membraneSchema),
  })
  .strict();

export type RulesFile = z.infer<typeof rulesFileSchema>;
export type MembraneSpec = z.infer<typeof membraneSchema>;
export type ReceptorSpec = z.infer<typeof receptorSchema>;
export type RuleSpec = z.infer<typeof ruleSchema>;
export type PatternSpec = z.infer<typeof patternSchema>;

/** A rules file that does not parse, validate or compile. `path` is the first bad key's dotted path. */
export class RulesError extends Error {
  readonly path: string;
  readonly problems: string[];
  constructor(source: string, problems: Array<{ path: string; message: string }>) {
    const lines = problems.map((p) => `${p.path || '(root)'}: ${p.message}`);
    super(`invalid rules (${source}):\n${lines.join('\n')}`);
    this.name = 'RulesError';
    this.path = problems[0]?.path ?? '';
    this.problems = lines;
  }
}

export function zodProblems(err: ZodError): Array<{ path: string; message: string }> {
  return err.issues.flatMap((issue) =>
    // Name each unknown key itself: "membranes.skin.rulez: unknown key" beats "membranes.skin: …".
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((k) => ({ path: [...issue.path, k].join('.'), message: 'unknown key' }))
      : [{ path: issue.path.join('.'), message: issue.message }],
  );
}
