/**
 * Smoothing of per-segment emotion vectors along the message.
 *
 * The seed describes "Ricci flow regularisation" (∂g/∂t = −2·Ric) of an "emotional state
 * manifold". What is implemented here is a discrete diffusion / heat-flow smoothing on a path
 * graph, inspired by that wording; it is NOT Ricci flow (nothing here evolves a metric by its
 * curvature). The segments of a message (subject, paragraphs, long runs of words) are the nodes
 * of a path graph, each carrying a vector of emotion intensities, and each step moves every node
 * a fraction `rate` towards its neighbours:
 *
 *     e_i ← e_i + rate · Σ_{j ∈ {i−1, i+1}} (e_j − e_i)          (explicit heat equation, x ← (I − rate·L) x)
 *
 * Why this and what it guarantees:
 *  - every edge moves the same amount out of one node and into the other, so the per-dimension
 *    SUM (hence the mean over segments) is preserved exactly;
 *  - the path Laplacian's eigenvalues lie in [0, 4), so for rate ≤ 1/4 every factor 1 − rate·λ is
 *    in (0, 1]: no oscillation, and the variance across segments never increases;
 *  - a lone spike (one shouting paragraph, a quoted "WARNING" in a signature) is spread and damped,
 *    while emotion sustained over consecutive segments survives. The extractor reads the PEAK of
 *    the smoothed profile, which is the part smoothing actually changes (the mean it cannot).
 */

/**
 * Smooths `values` in place: `n` segments × `dims` values each, row-major. Returns `values`.
 * `rate` is clamped to [0, 0.25] to keep the guarantees above.
 */
export function smoothPath(values: Float64Array, n: number, dims: number, steps: number, rate = 0.25): Float64Array {
  const r = Math.min(0.25, Math.max(0, Number.isFinite(rate) ? rate : 0));
  if (n < 2 || steps <= 0 || r === 0) return values;
  const next = new Float64Array(n * dims);
  for (let step = 0; step < steps; step++) {
    for (let i = 0; i < n; i++) {
      for (let d = 0; d < dims; d++) {
        const here = values[i * dims + d]!;
        let flow = 0;
        if (i > 0) flow += values[(i - 1) * dims + d]! - here;
        if (i < n - 1) flow += values[(i + 1) * dims + d]! - here;
        next[i * dims + d] = here + r * flow;
      }
    }
    values.set(next);
  }
  return values;
}

/** Population variance of column `d` (for tests and the volatility feature). */
export function columnVariance(values: Float64Array, n: number, dims: number, d: number): number {
  if (n === 0) return 0;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += values[i * dims + d]!;
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (values[i * dims + d]! - mean) ** 2;
  return v / n;
}
