/**
 * Chi-square survival function for even degrees of freedom, as used by Fisher's method in
 * Robinson's combining (bogofilter's prbf, SpamAssassin's chi2q).
 *
 * For dof = 2n, Q(χ² ≥ x2) = e^{-m} Σ_{i<n} m^i / i!  with m = x2/2 (the Poisson CDF). The naive
 * recurrence starting at e^{-m} underflows to 0 once m > 745 (150 confident tokens get there), so
 * the series is summed outward from its largest term in relative units and rescaled once in logs:
 * every intermediate value is in [0, n], and the result keeps full relative accuracy down to
 * ~1e-308.
 */

const LN_FACT_TABLE_SIZE = 256;
const lnFactTable = new Float64Array(LN_FACT_TABLE_SIZE);
for (let i = 2; i < LN_FACT_TABLE_SIZE; i++) lnFactTable[i] = lnFactTable[i - 1]! + Math.log(i);

/** ln(k!) for integer k ≥ 0: a table below 256, Stirling's series (error < 1e-16 relative) above. */
export function lnFactorial(k: number): number {
  if (k < LN_FACT_TABLE_SIZE) return lnFactTable[k]!;
  const inv = 1 / k;
  const inv2 = inv * inv;
  return k * Math.log(k) - k + 0.5 * Math.log(2 * Math.PI * k) + inv * (1 / 12 - inv2 * (1 / 360 - inv2 / 1260));
}

/**
 * ln Q(x2; dof) for even dof (odd dof is rounded down to the even below). Returns 0 (Q = 1) for
 * x2 ≤ 0 and -Infinity for x2 = +Infinity.
 */
export function logChi2Q(x2: number, dof: number): number {
  const n = Math.floor(dof / 2);
  if (n < 1 || !(x2 > 0)) return 0;
  if (x2 === Infinity) return -Infinity;
  const m = x2 / 2;
  // Largest term of the Poisson series is at i = floor(m); beyond n-1 the series is cut off.
  const peak = Math.min(n - 1, Math.floor(m));
  const lnPeak = -m + (peak === 0 ? 0 : peak * Math.log(m)) - lnFactorial(peak);
  let sum = 1;
  // Terms shrink monotonically away from the peak, so stop once they no longer change the sum.
  let t = 1;
  for (let i = peak + 1; i < n; i++) {
    t *= m / i;
    sum += t;
    if (t < sum * 1e-17) break;
  }
  t = 1;
  for (let i = peak; i > 0; i--) {
    t *= i / m;
    sum += t;
    if (t < sum * 1e-17) break;
  }
  return Math.min(0, lnPeak + Math.log(sum));
}

/** Q(x2; dof) = P(χ²_dof ≥ x2), dof even. */
export function chi2Q(x2: number, dof: number): number {
  return Math.exp(logChi2Q(x2, dof));
}
