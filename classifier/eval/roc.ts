/**
 * ROC chart as a standalone SVG. The FPR axis is logarithmic (1e-4 … 1 by default) because for a
 * spam filter only the far left matters: at 1% FPR every decent model catches nearly everything,
 * and a mail server cannot live with more than ~0.1% of ham lost.
 */
export interface RocSeries {
  name: string;
  /** ROC vertices in order of falling threshold (rocCurve()'s output). */
  points: ReadonlyArray<{ fpr: number; tpr: number }>;
}

export interface RocChartOptions {
  width?: number;
  height?: number;
  /** Left end of the log FPR axis; FPRs below it (including 0) are drawn on the left edge. */
  minFpr?: number;
  /** Bottom of the TPR axis; by default just below the lowest curve's TPR at minFpr. */
  minTpr?: number;
  title?: string;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** TPR of a curve at FPR f: the best vertex at or left of f (what a threshold can achieve there). */
function tprAt(points: RocSeries['points'], f: number): number {
  let best = 0;
  for (const p of points) if (p.fpr <= f && p.tpr > best) best = p.tpr;
  return best;
}

function pct(v: number): string {
  const p = v * 100;
  return `${Number(p.toPrecision(3))}%`;
}

export function renderRocSvg(series: readonly RocSeries[], opts: RocChartOptions = {}): string {
  const width = opts.width ?? 760;
  const height = opts.height ?? 480;
  const minFpr = opts.minFpr ?? 1e-4;
  const autoMin = series.length ? Math.min(...series.map((s) => tprAt(s.points, minFpr))) : 0;
  const minTpr = opts.minTpr ?? Math.max(0, Math.floor((autoMin - 0.02) * 10) / 10);
  const m = { left: 64, right: 190, top: opts.title ? 40 : 20, bottom: 56 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const lo = Math.log10(minFpr);
  const x = (f: number) => m.left + ((Math.log10(Math.max(f, minFpr)) - lo) / -lo) * pw;
  const y = (t: number) => m.top + (1 - (t - minTpr) / (1 - minTpr)) * ph;
  const r = (v: number) => Math.round(v * 10) / 10;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`);
  out.push(`<defs><clipPath id="plot"><rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}"/></clipPath></defs>`);
  if (opts.title) out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(opts.title)}</text>`);

  // Grid and ticks: decades on x, 0.1/0.05/0.02 steps on y depending on the visible range.
  out.push('<g stroke="#ddd" stroke-width="1">');
  const xt: number[] = [];
  for (let e = Math.ceil(lo); e <= 0; e++) xt.push(10 ** e);
  for (const f of xt) out.push(`<line x1="${r(x(f))}" y1="${m.top}" x2="${r(x(f))}" y2="${m.top + ph}"/>`);
  const span = 1 - minTpr;
  const step = span >= 0.5 ? 0.1 : span >= 0.2 ? 0.05 : 0.02;
  const yt: number[] = [];
  for (let t = Math.ceil(minTpr / step - 1e-9) * step; t <= 1 + 1e-9; t += step) yt.push(Math.round(t * 1000) / 1000);
  for (const t of yt) out.push(`<line x1="${m.left}" y1="${r(y(t))}" x2="${m.left + pw}" y2="${r(y(t))}"/>`);
  out.push('</g>');
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push('<g fill="#333">');
  for (const f of xt) out.push(`<text x="${r(x(f))}" y="${m.top + ph + 16}" text-anchor="middle">${pct(f)}</text>`);
  for (const t of yt) out.push(`<text x="${m.left - 6}" y="${r(y(t)) + 4}" text-anchor="end">${pct(t)}</text>`);
  out.push('</g>');
  out.push(`<text x="${m.left + pw / 2}" y="${height - 14}" text-anchor="middle">Ham false-positive rate (log scale)</text>`);
  out.push(
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">Spam recall (true-positive rate)</text>`,
  );

  // Curves.
  out.push('<g clip-path="url(#plot)" fill="none" stroke-width="1.8" stroke-linejoin="round">');
  series.forEach((s, i) => {
    const pts = curvePixels(s.points, x, y, minFpr).map(([a, b]) => `${r(a)},${r(b)}`);
    const dedup = pts.filter((p, j) => j === 0 || p !== pts[j - 1]);
    out.push(`<polyline stroke="${COLORS[i % COLORS.length]}" points="${dedup.join(' ')}"/>`);
  });
  out.push('</g>');

  // Legend: short line segments (not polylines, so one polyline per model holds).
  const lx = m.left + pw + 16;
  series.forEach((s, i) => {
    const ly = m.top + 10 + i * 20;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${COLORS[i % COLORS.length]}" stroke-width="3"/>`);
    out.push(`<text x="${lx + 28}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Pixel path of one curve. A segment that rises and moves right at once is a tie group, which is
 * straight in linear FPR; on a log axis that is a curve, so it is sampled (geometrically in FPR)
 * instead of drawn as a misleading straight chord.
 */
function curvePixels(
  points: RocSeries['points'],
  x: (f: number) => number,
  y: (t: number) => number,
  minFpr: number,
): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let prev: { fpr: number; tpr: number } | undefined;
  for (const p of points) {
    if (prev && p.fpr > prev.fpr && p.tpr > prev.tpr && p.fpr > minFpr) {
      const a = Math.max(prev.fpr, minFpr);
      const n = Math.min(32, Math.max(2, Math.ceil(Math.log10(p.fpr / a) * 16)));
      // A segment that starts left of the axis gets its exact value at the axis edge too (j = 0).
      for (let j = prev.fpr < minFpr ? 0 : 1; j < n; j++) {
        const f = a * (p.fpr / a) ** (j / n);
        const t = prev.tpr + ((f - prev.fpr) / (p.fpr - prev.fpr)) * (p.tpr - prev.tpr);
        out.push([x(f), y(t)]);
      }
    }
    out.push([x(p.fpr), y(p.tpr)]);
    prev = p;
  }
  return out;
}
