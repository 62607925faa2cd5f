/** The ROC SVG is well-formed, has one polyline per model and keeps its points inside the chart. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rocCurve } from '../../../classifier/eval/metrics.ts';
import { renderRocSvg } from '../../../classifier/eval/roc.ts';
import type { MailClass } from '../../../classifier/types.ts';

/** Tags balance (self-closing ones aside) and nothing but whitespace sits outside the root. */
function checkWellFormed(svg: string): void {
  assert.ok(svg.startsWith('<svg'), 'starts with <svg');
  assert.ok(svg.trimEnd().endsWith('</svg>'), 'ends with </svg>');
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(svg); m; m = tag.exec(svg)) {
    // Text between tags must not contain a stray "<" (an unescaped name, a broken tag).
    assert.ok(!svg.slice(last, m.index).includes('<'), `malformed markup near ${JSON.stringify(svg.slice(last, m.index + 20))}`);
    last = tag.lastIndex;
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else stack.push(name!);
  }
  assert.ok(!svg.slice(last).includes('<'));
  assert.deepEqual(stack, [], 'every element is closed');
}

function curve(n: number, shift: number): { fpr: number; tpr: number }[] {
  const scores: number[] = [];
  const labels: MailClass[] = [];
  for (let i = 0; i < n; i++) {
    scores.push(Math.min(1, i / n + shift), i / n);
    labels.push('spam', 'ham');
  }
  // Heavy ties at 0 and 1 as bogofilter produces.
  for (let i = 0; i < 50; i++) {
    scores.push(1, 0);
    labels.push('spam', 'ham');
  }
  return rocCurve(scores, labels);
}

test('ROC SVG: well-formed, one polyline per model, legend with (escaped) names', () => {
  const series = [
    { name: 'bogofilter', points: curve(2000, 0.3) },
    { name: 'ceerion.bayes', points: curve(2000, 0.1) },
    { name: 'a <b> & "c"', points: curve(300, 0.5) },
  ];
  const svg = renderRocSvg(series, { title: 'ROC & friends' });
  checkWellFormed(svg);
  assert.equal(svg.match(/<polyline\b/g)?.length, 3);
  assert.ok(svg.includes('a &lt;b&gt; &amp; &quot;c&quot;'));
  assert.ok(svg.includes('ROC &amp; friends'));
  assert.ok(svg.includes('0.01%') && svg.includes('0.1%') && svg.includes('100%'), 'log-scale FPR ticks');
  assert.ok(/Ham false-positive rate/.test(svg) && /Spam recall/.test(svg), 'axis labels');
});

test('ROC SVG: every polyline point is a finite coordinate inside the view box', () => {
  const svg = renderRocSvg([{ name: 'm', points: curve(500, 0.2) }], { width: 600, height: 400, minTpr: 0 });
  const pts = svg.match(/points="([^"]*)"/)![1]!.split(' ');
  assert.ok(pts.length > 10);
  for (const p of pts) {
    const [x, y] = p.split(',').map(Number);
    assert.ok(Number.isFinite(x) && Number.isFinite(y), p);
    assert.ok(x! >= 0 && x! <= 600 && y! >= 0 && y! <= 400, p);
  }
});

test('ROC SVG: FPR 0 sits on the left edge of the log axis; no models still gives a valid chart', () => {
  const svg = renderRocSvg([{ name: 'perfect', points: [{ fpr: 0, tpr: 0 }, { fpr: 0, tpr: 1 }, { fpr: 1, tpr: 1 }] }], { minTpr: 0 });
  const pts = svg.match(/points="([^"]*)"/)![1]!.split(' ');
  const left = Number(pts[0]!.split(',')[0]);
  assert.equal(Number(pts[1]!.split(',')[0]), left);
  assert.ok(Number(pts[pts.length - 1]!.split(',')[0]) > left);
  const empty = renderRocSvg([]);
  checkWellFormed(empty);
  assert.equal(empty.match(/<polyline\b/g), null);
});
