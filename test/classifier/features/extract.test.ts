/** extractFeatures on real-looking messages: the token families, the outputs, the caps. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { extractFeatures } from '../../../classifier/features/extract.ts';
import { hashToken } from '../../../classifier/features/hash.ts';
import { parseMessage } from '../../../classifier/mime/parse.ts';
import type { FeatureOptions, MessageFeatures } from '../../../classifier/types.ts';

const LIMITS = { maxBytes: 1 << 20, maxHeaderBytes: 64 * 1024, maxParts: 100, maxDepth: 10 };
const OPTS: FeatureOptions & { debug: boolean } = { onegrams: true, twograms: true, threegrams: true, maxBodyTokens: 1000, maxTextChars: 2000, debug: true };

const SPAM = [
  'Return-Path: <bounce-77@mailer.cheap-deals.biz>',
  'Authentication-Results: mx.example.net; spf=softfail smtp.mailfrom=cheap-deals.biz; dkim=none; dkim=pass header.d=x.test; dmarc=fail (p=none) header.from=bank.example',
  'Received: from unknown (HELO friend) (203.0.113.9)',
  '  by mx.example.net with SMTP; Mon, 2 Sep 2002 10:00:00 +0000',
  'Received: from mail.cheap-deals.biz (host-9.dsl.provider.co.uk [198.51.100.7])',
  '\tby relay.cheap-deals.biz (8.9.3/8.9.3) with ESMTP id AA1; Mon, 2 Sep 2002 09:59:00 +0000',
  'From: "BEST OFFERS" <Winner2002@bank.example>',
  'Reply-To: claims@payout.example.ru',
  'To: undisclosed-recipients:;',
  'Subject: =?iso-8859-1?Q?FREE_money_for_YOU=21=21=21?=',
  'Date: Thu, 2 Sep 2010 10:00:00 +0000',
  'X-Mailer: Microsoft Outlook Express 6.00.2600.0000',
  'X-Priority: 1 (Highest)',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="----=_NextPart_000_0001"',
  '',
  '------=_NextPart_000_0001',
  'Content-Type: text/html; charset=us-ascii',
  'Content-Transfer-Encoding: quoted-printable',
  '',
  '<html><body><p>Click here to claim $1,000,000 now!!! 100% free, guaranteed.</p>',
  '<a href=3D"http://203.0.113.9/claim.php?id=3D1">claim</a> or visit www.payout.example.ru/go',
  '<div style=3D"display:none">tomorrow meeting agenda budget</div>',
  '<img src=3D"http://img.cheap-deals.biz/banner.gif"></body></html>',
  '------=_NextPart_000_0001',
  'Content-Type: application/octet-stream; name="invoice.pdf.exe"',
  'Content-Transfer-Encoding: base64',
  'Content-Disposition: attachment; filename="invoice.pdf.exe"',
  '',
  'TVqQAAMAAAAEAAAA',
  '------=_NextPart_000_0001--',
  '',
].join('\r\n');

const HAM = [
  'From: Alice <alice@example.org>',
  'To: bob@example.net, carol@example.net',
  'Cc: dave@example.net',
  'Subject: Re: minutes of the budget meeting',
  'Message-ID: <20020902.1@mail.example.org>',
  'In-Reply-To: <x@example.net>',
  'List-Id: <team.lists.example.org>',
  'List-Unsubscribe: <mailto:team-leave@lists.example.org>',
  'User-Agent: Mutt/1.4i',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hi Bob,',
  '',
  'the minutes are below. The budget meeting moved to Thursday.',
  'Action items: review the draft. Send comments by Friday.',
  '',
  '-- ',
  'Alice',
].join('\n');

const features = (raw: string, opts: Partial<typeof OPTS> = {}) => extractFeatures(parseMessage(Buffer.from(raw, 'utf8'), LIMITS), { ...OPTS, ...opts });
const has = (f: MessageFeatures, t: string) => f.debugTokens!.includes(t);

function checkShape(f: MessageFeatures, opts: FeatureOptions): void {
  assert.equal(f.tokens.length % 2, 0);
  assert.equal(f.sequence.length % 2, 0);
  if (f.debugTokens!.length > 0) assert.equal(f.debugTokens!.length * 2, f.tokens.length);
  const keys = new Set<string>();
  for (let i = 0; i < f.tokens.length; i += 2) keys.add(f.tokens[i] + ':' + f.tokens[i + 1]);
  assert.equal(keys.size, f.tokens.length / 2, 'tokens are unique');
  const nSeq = f.sequence.length / 2;
  assert.ok(nSeq <= opts.maxBodyTokens);
  assert.ok(f.steps.length <= 128);
  if (nSeq > 0) assert.equal(f.steps[0], 0);
  for (let i = 0; i < f.steps.length; i++) {
    const end = i + 1 < f.steps.length ? f.steps[i + 1]! : nSeq;
    assert.ok(end > f.steps[i]! && end - f.steps[i]! <= 16, `step ${i}`);
  }
  assert.ok(f.text.length <= opts.maxTextChars);
  for (const [k, v] of Object.entries(f.numeric)) assert.ok(Number.isFinite(v) && v >= 0 && v <= 1, `${k}=${v}`);
  assert.ok(f.urls.length <= 64 && f.urlDomains.length <= 64);
}

test('spam: header, body, URL, HTML and attachment tokens', () => {
  const f = features(SPAM);
  checkShape(f, OPTS);
  const want = [
    'subject:free', 'subject:money', 'subject:!', 'subject:len:m',
    'from:d:bank.example', 'from:rd:bank.example', 'from:tld:example', 'from:lp:Aa9', 'from:name:best', 'from:name:offers',
    'replyto:rd:example.ru', 'replyto:differs', 'rpath:rd:cheap-deals.biz', 'rpath:differs', 'to:undisclosed',
    'xmailer:microsoft', 'xmailer:outlook', 'prio:1', 'hdr:x-mailer', 'hdr:missing:message-id', 'mid:missing',
    'H*r:hops:2', 'H*r:helo:nodot', 'H*r:ip:203.0', 'H*r:ipclass:public', 'H*r:with:smtp', 'H*r:with:esmtp',
    'H*r:helo:cheap-deals.biz', 'H*r:rdns:provider.co.uk', 'H*r:helomismatch', 'H*r:by:cheap-deals.biz',
    'date:future', 'auth:spf=softfail', 'auth:dkim=none', 'auth:dkim=pass', 'auth:dmarc=fail',
    'ct:multipart/mixed', 'ct:boundary:-=_AaAa_9_9',
    'click', 'here', 'claim', 'click here', 'click here to', 'money:$7', 'num:9,999,999', 'pct:100', '!!!',
    'url:ip', 'url:ext:php', 'url:query', 'url:p:claim', 'url:d:www.payout.example.ru', 'url:rd:example.ru', 'url:tld:ru',
    'url:d:img.cheap-deals.biz', 'url:rd:cheap-deals.biz', 'url:count:3-5',
    'mime:html-only', 'mime:parts:3-5', 'html:hidden', 'html:hidden:s',
    'attach:application/octet-stream', 'attach:ext:exe', 'attach:risky', 'attach:double-ext', 'attach:count:1',
  ];
  for (const t of want) assert.ok(has(f, t), `missing ${t}`);
  assert.ok(!has(f, 'tomorrow'), 'hidden text is not read as body text');
  assert.ok(!has(f, 'x-priority'));
  assert.deepEqual(f.auth, { spf: 'softfail', dkim: 'pass', dmarc: 'fail' });
  assert.equal(f.subject, 'FREE money for YOU!!!');
  assert.equal(f.fromDomain, 'bank.example');
  assert.equal(f.replyToDomain, 'payout.example.ru');
  assert.deepEqual(f.attachmentTypes, ['application/octet-stream']);
  assert.ok(f.urls.includes('http://203.0.113.9/claim.php?id=1'));
  assert.ok(f.urls.every((u) => /^(https?|ftp):\/\/|^www\./i.test(u)), 'only absolute web URLs are listed');
  assert.deepEqual(new Set(f.urlDomains), new Set(['203.0.113.9', 'img.cheap-deals.biz', 'www.payout.example.ru']));
  assert.equal(f.html.hiddenTextChars, 'tomorrowmeetingagendabudget'.length);
  assert.equal(f.numeric.htmlOnly, 1);
  assert.equal(f.numeric.ipUrl, 1);
  assert.equal(f.numeric.replyToDiffers, 1);
  assert.equal(f.numeric.authFail, 1);
  assert.ok(f.numeric.subjectCapsRatio! > 0.4);
  assert.ok(f.text.startsWith('Click here to claim $1,000,000 now!!!'));
});

test('ham: list, recipients, message-id, user agent; no spam-only tokens', () => {
  const f = features(HAM);
  checkShape(f, OPTS);
  for (const t of ['list:yes', 'list:unsub', 'list:id:team.lists.example.org', 'to:n:2', 'cc:n:1', 'mid:d:example.org', 'mid:eqfrom', 'ua:mutt', 'hdr:in-reply-to', 'subject:re', 'auth:absent', 'mime:text-only', 'budget meeting', 'date:missing'])
    assert.ok(has(f, t), `missing ${t}`);
  for (const t of ['!!!', 'url:ip', 'html:hidden', 'replyto:differs']) assert.ok(!has(f, t), `unexpected ${t}`);
  assert.deepEqual(f.auth, {});
  assert.equal(f.numeric.listHeaders, 1);
  assert.equal(f.numeric.htmlOnly, 0);
});

test('every debug token hashes to its token, for both messages and every n-gram setting', () => {
  for (const raw of [SPAM, HAM]) {
    for (const [two, three] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const f = features(raw, { twograms: two, threegrams: three });
      for (let i = 0; i < f.debugTokens!.length; i++) assert.deepEqual(hashToken(f.debugTokens![i]!), [f.tokens[2 * i], f.tokens[2 * i + 1]], f.debugTokens![i]);
      assert.equal(f.debugTokens!.some((t) => /^[a-z]+ [a-z]+$/.test(t)), two);
      assert.equal(f.debugTokens!.some((t) => /^[a-z]+ [a-z]+ [a-z]+$/.test(t)), three);
    }
  }
});

test('the same tokens with and without debug; debugTokens empty without it', () => {
  const a = features(SPAM, { debug: true });
  const b = features(SPAM, { debug: false });
  assert.deepEqual(b.tokens, a.tokens);
  assert.deepEqual(b.sequence, a.sequence);
  assert.deepEqual(b.steps, a.steps);
  assert.deepEqual(b.debugTokens, []);
});

test('sequence: subject first, body words in reading order, steps at sentence ends; without unigrams too', () => {
  const f = features(HAM, { onegrams: false, twograms: false, threegrams: false });
  const words = ['re', 'minutes', 'of', 'the', 'budget', 'meeting', 'hi', 'bob', 'the', 'minutes', 'are', 'below'];
  for (let i = 0; i < words.length; i++) assert.deepEqual([f.sequence[2 * i], f.sequence[2 * i + 1]], hashToken(words[i]!), words[i]);
  assert.deepEqual([...f.steps.slice(0, 3)], [0, 6, 8], 'subject | "Hi Bob," | "the minutes are below."');
  assert.ok(!f.debugTokens!.includes('minutes'), 'no unigrams in the token set');
  assert.ok(f.debugTokens!.includes('subject:minutes'));
});

test('caps: maxBodyTokens and maxTextChars bound everything; 0 leaves headers only', () => {
  const long = HAM + '\n' + 'lorem ipsum dolor sit amet consectetur. '.repeat(5000);
  const f = features(long, { maxBodyTokens: 100, maxTextChars: 300 });
  checkShape(f, { ...OPTS, maxBodyTokens: 100, maxTextChars: 300 });
  assert.equal(f.sequence.length / 2, 100);
  const zero = features(long, { maxBodyTokens: 0, maxTextChars: 0 });
  assert.equal(zero.sequence.length, 0);
  assert.equal(zero.text, '');
  assert.ok(zero.debugTokens!.includes('subject:minutes'));
  assert.ok(!zero.debugTokens!.includes('lorem'));
  const steps = features(long, { maxBodyTokens: 100_000 });
  assert.equal(steps.steps.length, 128);
  assert.ok(steps.sequence.length / 2 <= 128 * 16);
});

test('body specials: numbers by shape, money, percent, exclamations, long words, CJK pairs, apostrophes', () => {
  const f = features(['Subject: x', '', 'Call 555-1234 or 1-800-555-0199 for €50 and 25% off! Save 12345 now!!', "Don’t miss it. " + 'x'.repeat(50), '今日は無料'].join('\n'));
  for (const t of ['555', '1234', '0199', 'num:99999', 'money:€2', 'pct:25', '!!', 'don\'t', 'sk:xxxxxxx', '今日', '日は', 'は無', '無料', 'call'])
    assert.ok(has(f, t), `missing ${t}`);
  assert.ok(!has(f, 'x'.repeat(50)));
});
