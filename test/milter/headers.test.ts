import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deleteHeaders, foldHeader, headerIndexes, prependHeader, type HeaderField } from '../../milter/headers.ts';

const headers: HeaderField[] = [
  { name: 'Received', value: 'from a' },
  { name: 'X-Ceerion-Milter', value: 'forged one' },
  { name: 'Subject', value: 'hi' },
  { name: 'x-ceerion-milter', value: 'keep me' },
  { name: 'Received', value: 'from b' },
  { name: 'X-CEERION-MILTER', value: 'forged two' },
];

describe('headerIndexes', () => {
  test('counts 1-based per name, case-insensitively', () => {
    assert.deepEqual(headerIndexes(headers, 'X-Ceerion-Milter'), [1, 2, 3]);
    assert.deepEqual(headerIndexes(headers, 'received'), [1, 2]);
    assert.deepEqual(headerIndexes(headers, 'Subject'), [1]);
  });

  test('no such header: no indexes', () => {
    assert.deepEqual(headerIndexes(headers, 'From'), []);
    assert.deepEqual(headerIndexes([], 'Subject'), []);
  });
});

describe('deleteHeaders', () => {
  test('CHGHEADER with an empty value for each copy, highest index first', () => {
    assert.deepEqual(deleteHeaders(headers, 'X-Ceerion-Milter'), [
      { kind: 'chgheader', index: 3, name: 'X-Ceerion-Milter', value: '' },
      { kind: 'chgheader', index: 2, name: 'X-Ceerion-Milter', value: '' },
      { kind: 'chgheader', index: 1, name: 'X-Ceerion-Milter', value: '' },
    ]);
  });

  test('a match predicate picks copies but indexes still count every copy of the name', () => {
    const mods = deleteHeaders(headers, 'x-ceerion-milter', (h) => h.value.startsWith('forged'));
    assert.deepEqual(
      mods.map((m) => (m.kind === 'chgheader' ? m.index : -1)),
      [3, 1],
    );
  });

  test('deleting in the returned order removes exactly the matched headers', () => {
    // Apply the modifications the way Postfix does, against the live header list.
    const live = headers.map((h) => ({ ...h }));
    for (const mod of deleteHeaders(headers, 'X-Ceerion-Milter', (h) => h.value !== 'keep me')) {
      assert.equal(mod.kind, 'chgheader');
      if (mod.kind !== 'chgheader') continue;
      let n = 0;
      const at = live.findIndex((h) => h.name.toLowerCase() === mod.name.toLowerCase() && ++n === mod.index);
      assert.ok(at >= 0);
      live.splice(at, 1);
    }
    assert.deepEqual(
      live.map((h) => h.value),
      ['from a', 'hi', 'keep me', 'from b'],
    );
  });

  test('nothing to delete: no modifications', () => {
    assert.deepEqual(deleteHeaders(headers, 'From'), []);
    assert.deepEqual(deleteHeaders(headers, 'Subject', () => false), []);
  });
});

describe('foldHeader', () => {
  const fields = [
    'ceerion-milter 0.1.0 on mx1.mail.example.org',
    'verdict=accept',
    'queue-id=4XyZ1abcDEF',
    'ref=0123456789.12',
    'spf=pass',
    'dkim=pass header.d=example.org',
    'dmarc=pass',
  ];
  const value = fields.join('; ');

  test('folds at "; " with "\\n\\t", never "\\r\\n"', () => {
    const folded = foldHeader('X-Ceerion-Milter', value);
    assert.ok(folded.includes('\n\t'));
    assert.ok(!folded.includes('\r'));
    assert.ok(!/\n(?!\t)/.test(folded), 'every newline starts a continuation');
    // Unfolding gives the original value back.
    assert.equal(folded.replace(/\n\t/g, ' '), value);
    // Folds only happen after a semicolon.
    for (const line of folded.split('\n').slice(0, -1)) assert.ok(line.endsWith(';'), line);
  });

  test('keeps every line at 78 characters or fewer, counting the field name', () => {
    for (const name of ['X-Ceerion-Milter', 'Authentication-Results', 'X']) {
      const lines = `${name}: ${foldHeader(name, value)}`.split('\n');
      assert.ok(lines.length > 1);
      for (const line of lines) assert.ok(line.replace(/^\t/, ' '.repeat(8)).length <= 78, `${line.length}: ${line}`);
    }
  });

  test('a short value stays on one line', () => {
    assert.equal(foldHeader('X-Ceerion-Milter', 'a; b; c'), 'a; b; c');
  });

  test('a part longer than the width cannot be folded and stays whole', () => {
    const long = 'x'.repeat(120);
    assert.equal(foldHeader('X-Test', long), long);
    assert.equal(foldHeader('X-Test', `a; ${long}; b`), `a;\n\t${long};\n\tb`);
  });

  test('honours a custom width', () => {
    assert.equal(foldHeader('X', 'aaaa; bbbb; cccc', 12), 'aaaa;\n\tbbbb;\n\tcccc');
    assert.equal(foldHeader('X', 'aaaa; bbbb; cccc', 200), 'aaaa; bbbb; cccc');
  });
});

describe('prependHeader', () => {
  test('INSHEADER at index 0 with the folded value', () => {
    const value = Array.from({ length: 8 }, (_, i) => `field${i}=${'v'.repeat(10)}`).join('; ');
    assert.deepEqual(prependHeader('X-Ceerion-Milter', value), {
      kind: 'insheader',
      index: 0,
      name: 'X-Ceerion-Milter',
      value: foldHeader('X-Ceerion-Milter', value),
    });
    assert.ok(foldHeader('X-Ceerion-Milter', value).includes('\n\t'));
  });
});
