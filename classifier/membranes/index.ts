/** The membranes component (a P-system of spam rules). See README.md. */
export { MembraneComponent } from './component.ts';
export type { LabelledFeatures, MembraneFitOptions, MembraneOptions, MembraneRun, MembraneState } from './component.ts';
export { DEFAULT_RULES_URL, loadRules, parseRules } from './compile.ts';
export type { CompiledRules } from './compile.ts';
export { RulesError } from './schema.ts';
export { FACTS, computeFacts, scanWords, urlHost, isIpHost } from './facts.ts';
export type { FactName } from './facts.ts';
