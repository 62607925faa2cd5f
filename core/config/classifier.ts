/**
 * The `classifier` section: the reservoir spam classifier's parts, its decision thresholds, the
 * persona traits, learning and how the milter uses the verdict. Names follow the seed's
 * `ReservoirFilter` / `JunkFilter.Params` where it has one (docs: classifier/README.md).
 */
import { z } from 'zod';

const unit = z.number().min(0).max(1);

/** The seed's presets: how much the reservoir counts against Bayes, and its size. */
export const PRESETS = {
  conservative: { reservoirWeight: 0.2, reservoirSize: 50, spectralRadius: 0.95, leakRate: 0.3, treeDepth: 2 },
  balanced: { reservoirWeight: 0.3, reservoirSize: 100, spectralRadius: 0.95, leakRate: 0.3, treeDepth: 3 },
  aggressive: { reservoirWeight: 0.4, reservoirSize: 200, spectralRadius: 0.97, leakRate: 0.2, treeDepth: 4 },
} as const;
export type PresetName = keyof typeof PRESETS;

const componentToggle = { enabled: z.boolean().default(true) };

export const classifierSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Fills reservoirWeight and the reservoir settings that are not given explicitly. */
    preset: z.enum(['conservative', 'balanced', 'aggressive']).default('conservative'),
    /**
     * `stacked`: a logistic regression over every component's calibrated log-odds (fitted by
     * `ceerion train`); `weighted`: the seed's fixed mix, reservoirWeight × reservoir +
     * (1 − reservoirWeight) × Bayes, nudged by membranes and affect.
     */
    mode: z.enum(['stacked', 'weighted']).default('stacked'),
    /** Share of the reservoir against Bayes in `weighted` mode; default from the preset. */
    reservoirWeight: unit.optional(),
    thresholds: z
      .object({
        /** Score at or above this goes to Junk. */
        junk: unit.default(0.3),
        /** Score above this is rejected at SMTP time (550 5.7.1). */
        reject: unit.default(0.8),
      })
      .strict()
      .default({}),
    features: z
      .object({
        onegrams: z.boolean().default(true),
        twograms: z.boolean().default(true),
        threegrams: z.boolean().default(false),
        /** Raw bytes of a message that are read at all; the rest is ignored. */
        maxBytes: z.number().int().min(1024).default(256 * 1024),
        maxHeaderBytes: z.number().int().min(1024).default(64 * 1024),
        maxParts: z.number().int().min(1).default(64),
        maxDepth: z.number().int().min(1).default(8),
        /** Body words read at Attention 0.5; Attention scales it (see persona). */
        maxBodyTokens: z.number().int().min(16).default(1500),
        maxTextChars: z.number().int().min(256).default(16 * 1024),
      })
      .strict()
      .default({}),
    bayes: z
      .object({
        ...componentToggle,
        robinsonX: unit.default(0.52),
        robinsonS: z.number().positive().default(0.1),
        minDev: z.number().min(0).max(0.5).default(0.1),
        minLearned: z.number().int().min(0).default(20),
        maxTokens: z.number().int().min(0).default(150),
      })
      .strict()
      .default({}),
    reservoir: z
      .object({
        ...componentToggle,
        reservoirSize: z.number().int().min(10).max(400).optional(),
        spectralRadius: z.number().positive().max(1.5).optional(),
        leakRate: z.number().positive().max(1).optional(),
        treeDepth: z.number().int().min(1).max(6).optional(),
        inputScaling: z.number().positive().default(1),
        density: z.number().positive().max(1).default(0.1),
        ridge: z.number().positive().default(1),
        seed: z.number().int().default(20261121),
        minLearned: z.number().int().min(0).default(20),
      })
      .strict()
      .default({}),
    /** Logistic regression over the hashed tokens (classifier/linear), a discriminative partner to Bayes. */
    linear: z
      .object({
        ...componentToggle,
        bits: z.number().int().min(12).max(24).default(20),
        learningRate: z.number().positive().default(0.5),
        epochs: z.number().int().min(1).max(50).default(6),
        minLearned: z.number().int().min(0).default(20),
      })
      .strict()
      .default({}),
    membranes: z
      .object({
        ...componentToggle,
        /** Rules YAML; default the shipped classifier/membranes/rules.yaml. */
        rulesFile: z.string().default(''),
        maxSteps: z.number().int().min(1).max(64).default(4),
      })
      .strict()
      .default({}),
    affect: z
      .object({
        ...componentToggle,
        minLearned: z.number().int().min(0).default(20),
      })
      .strict()
      .default({}),
    /**
     * Persona traits (the seed's). Each has one documented, tested effect:
     * valence/arousal/dominance shape the affect features; attention scales the body words read;
     * memory sets the forgetting factor of online learning; creativity weights the novelty signal
     * (share of never-seen tokens) in the combination.
     */
    persona: z
      .object({
        valence: z.number().min(-1).max(1).default(0.2),
        arousal: unit.default(0.6),
        dominance: unit.default(0.5),
        attention: unit.default(0.8),
        memory: unit.default(0.7),
        creativity: unit.default(0.5),
      })
      .strict()
      .default({}),
    learn: z
      .object({
        /** The local learning endpoint (POST /learn/spam|ham); needs `token` to start. */
        httpEnabled: z.boolean().default(true),
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(10042),
        /** Bearer token (≥16 chars); empty = the endpoint stays off and says so. */
        token: z
          .string()
          .default('')
          .refine((t) => t === '' || t.length >= 16, 'at least 16 characters (or empty to turn the endpoint off)'),
        maxMessageBytes: z.number().int().positive().default(10 * 1024 * 1024),
        /** Also keep per-user Bayes counts (scope user:U) on top of the global model. */
        perUser: z.boolean().default(false),
      })
      .strict()
      .default({}),
    milter: z
      .object({
        /** Reject above thresholds.reject; off = such mail goes to Junk instead. */
        reject: z.boolean().default(true),
        /** A failing classifier: `accept` = pass unscored (logged); or tempfail/reject. */
        onError: z.enum(['tempfail', 'accept', 'reject']).default('accept'),
        timeoutMs: z.number().int().positive().default(5_000),
      })
      .strict()
      .default({}),
    /** Seconds between the subscriber's safety-net polls for learned updates. */
    pollMs: z.number().int().positive().default(2_000),
  })
  .strict();

export type ClassifierConfig = z.infer<typeof classifierSchema>;
