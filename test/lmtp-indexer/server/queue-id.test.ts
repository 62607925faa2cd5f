import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { postfixQueueId } from '../../../lmtp-indexer/server/queue-id.ts';

const head = (s: string) => Buffer.from(s, 'latin1');

test('the queue id of the top Received header Postfix wrote: smtpd, pickup, long ids, folded lines', () => {
  const smtpd = 'Received: from mx.example.net (mx.example.net [192.0.2.7])\r\n\tby mail.example.test (Postfix) with ESMTPS id 4Xz9QJ2lP1z2xYb\r\n\tfor <alice@example.test>; Sun, 22 Nov 2026 03:00:00 +0000 (UTC)\r\nSubject: hi\r\n\r\nbody';
  assert.equal(postfixQueueId(head(smtpd)), '4Xz9QJ2lP1z2xYb');
  assert.equal(postfixQueueId(head('Received: by mail.example.test (Postfix, from userid 0)\n\tid A91A423E1B4; Sun, 22 Nov 2026 03:00:00 +0000\n\nbody')), 'A91A423E1B4');
  assert.equal(postfixQueueId(head('Received: from a (a [127.0.0.1]) by b (Postfix) with ESMTP id 1B9A623E19D for <x@y>; date\r\n\r\n')), '1B9A623E19D');
  // A trace header of ours on top is skipped; the first *Received* counts.
  assert.equal(postfixQueueId(head('X-Ceerion-Milter: verdict=accept\r\nReceived: by h (Postfix) with LMTP id ABCDEF1234;\r\n\r\n')), 'ABCDEF1234');
});

test('no id: another MTA on top, a lower hop’s Postfix, garbage, the body', () => {
  // Only the first Received counts: the second names a queue on another machine.
  const exim = 'Received: from x by y with esmtp (Exim 4.96) id 1tABCD-000123-4x; date\r\nReceived: by z (Postfix) with ESMTP id ABCDEF1234; date\r\n\r\n';
  assert.equal(postfixQueueId(head(exim)), undefined);
  assert.equal(postfixQueueId(head('Subject: no trace\r\n\r\nReceived: by z (Postfix) with ESMTP id ABCDEF1234\r\n')), undefined, 'a Received line in the body');
  assert.equal(postfixQueueId(head('Received: by z (Postfix) with ESMTP id not-an-id\r\n\r\n')), undefined);
  assert.equal(postfixQueueId(head('Received: by z (Postfix) with ESMTP id abc\r\n\r\n')), undefined, 'too short, lower-case: no queue id');
  assert.equal(postfixQueueId(Buffer.alloc(0)), undefined);
});

test('fuzz: never throws, and an id it gives is one of the header’s words (20000 runs)', () => {
  const part = fc.oneof(
    fc.constantFrom('Received: ', '(Postfix)', '(Postfix, from userid 0)', ' with ESMTP', ' id ', 'ABCDEF12345', '4Xz9QJ2lP1z2xYb', '\r\n', '\n', '\t', ' ', '\r\n\r\n', 'Subject: x', ';'),
    fc.string({ maxLength: 20 }),
  );
  fc.assert(
    fc.property(fc.array(part, { maxLength: 40 }), (parts) => {
      const text = parts.join('');
      const id = postfixQueueId(head(text));
      if (id !== undefined) {
        assert.match(id, /^[0-9A-Za-z]+$/);
        assert.ok(text.includes(id));
      }
    }),
    { numRuns: 20_000 },
  );
});
