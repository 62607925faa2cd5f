/**
 * Quota sizes as operators write them (`500M`, `2G`, `1T`) and the Dovecot quota_rule the accounts
 * table stores for them (`*:storage=2G`). NULL in the table means "the default rule of quota.conf".
 * Dovecot reads the size suffixes B, K, M, G, T as powers of 1024.
 */
export class InvalidQuotaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidQuotaError';
  }
}

const UNIT_BYTES: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * `2G` → `*:storage=2G`; `none` or `default` → null (the default rule applies). No unit, zero
 * (Dovecot would read it as "unlimited") and fractions are refused.
 */
export function quotaRuleFor(size: string): string | null {
  const text = size.trim();
  if (/^(none|default)$/i.test(text)) return null;
  const m = /^([1-9]\d{0,6})([KMGT])$/i.exec(text);
  if (!m) throw new InvalidQuotaError(`${JSON.stringify(size)} is not a quota such as 500M, 2G or 1T (or none for the default)`);
  const unit = m[2]!.toUpperCase();
  if (Number(m[1]) * UNIT_BYTES[unit]! > Number.MAX_SAFE_INTEGER) throw new InvalidQuotaError(`${JSON.stringify(size)} is larger than any mailbox`);
  return `*:storage=${m[1]}${unit}`;
}

/** The size of a rule this module wrote (`*:storage=2G` → `2G`); any other rule as it is. */
export function describeQuotaRule(rule: string | null): string {
  if (rule === null) return 'default';
  const m = /^\*:storage=(\d+[KMGT])$/.exec(rule);
  return m ? m[1]! : rule;
}
