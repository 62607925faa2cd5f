// Proves the harness itself: a private Postfix relays to the sink, and several
// instances can run side by side. Requires root and Debian's postfix package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import net from 'node:net';
import { startPostfix, readMilterSnippet } from './postfix.ts';
import { startSmtpSink } from './smtp-sink.ts';
import { openSmtpSession, sendMail } from './smtp-client.ts';

const message = (n: number, extra = ''): string =>
  `From: a@example.com\nTo: b@example.org\nSubject: test ${n}\nMessage-ID: <m${n}@example.com>\n\nbody ${n}\n${extra}`;

test('private Postfix relays messages to the sink', async (t) => {
  const sink = await startSmtpSink();
  t.after(() => sink.close());
  const pf = await startPostfix({ relayPort: sink.port });
  t.after(() => pf.stop());

  // One message on its own connection, two over one session; the second body
  // has lines starting with "." to exercise dot-stuffing end to end.
  const r1 = await sendMail({ port: pf.smtpPort, from: 'a@example.com', to: ['b@example.org'], data: message(1) });
  assert.equal(r1.code, 250, r1.text);
  const session = await openSmtpSession(pf.smtpPort);
  const r2 = await session.send({ from: 'a@example.com', to: ['b@example.org', 'c@example.org'], data: message(2, '.dot\n..two\n.\n') });
  const r3 = await session.send({ from: 'a@example.com', to: ['b@example.org'], data: message(3) });
  await session.quit();
  assert.equal(r2.code, 250, r2.text);
  assert.equal(r3.code, 250, r3.text);

  await sink.waitFor(3, 20_000);
  // Let any duplicate delivery show up before asserting "exactly 3".
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sink.messages.length, 3);
  const byId = (n: number) => {
    const m = sink.messages.find((msg) => msg.data.includes(`Message-ID: <m${n}@example.com>`));
    assert.ok(m, `message ${n} not delivered`);
    return m;
  };
  for (const n of [1, 3]) assert.match(byId(n).data, new RegExp(`\r\n\r\nbody ${n}\r\n$`));
  assert.match(byId(2).data, /\r\n\r\nbody 2\r\n\.dot\r\n\.\.two\r\n\.\r\n$/);
  assert.deepEqual(byId(2).rcpts.sort(), ['b@example.org', 'c@example.org']);
  assert.equal(byId(1).from, 'a@example.com');
  assert.match(byId(1).data, /^Received: from /);

  assert.equal(await pf.queueSize(), 0);
  const log = await pf.waitForLog(/status=sent/);
  assert.match(log, /relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+/);
});

test('two Postfix instances run at the same time', async (t) => {
  const sinks = await Promise.all([startSmtpSink(), startSmtpSink()]);
  t.after(() => Promise.all(sinks.map((s) => s.close())));
  const pfs = await Promise.all(sinks.map((s) => startPostfix({ relayPort: s.port })));
  t.after(() => Promise.all(pfs.map((p) => p.stop())));

  const [a, b] = pfs;
  assert.ok(a && b);
  assert.notEqual(a.smtpPort, b.smtpPort);
  assert.notEqual(a.dir, b.dir);
  const replies = await Promise.all(
    pfs.map((p, i) => sendMail({ port: p.smtpPort, from: 'a@example.com', to: ['b@example.org'], data: message(10 + i) })),
  );
  for (const r of replies) assert.equal(r.code, 250, r.text);
  // Each instance relays only to its own sink.
  for (const [i, s] of sinks.entries()) {
    const [m] = await s.waitFor(1, 20_000);
    assert.ok(m?.data.includes(`Subject: test ${10 + i}`));
  }

  // After stop, the instance is really gone: port closed and temp dir removed.
  await a.stop();
  await assert.rejects(sendMail({ port: a.smtpPort, from: 'a@example.com', to: ['b@example.org'], data: message(99) }));
  await assert.rejects(access(a.dir));
  const r = await sendMail({ port: b.smtpPort, from: 'a@example.com', to: ['b@example.org'], data: message(12) });
  assert.equal(r.code, 250, r.text);
});

test('milter snippet parses and is applied to main.cf', async (t) => {
  const snippet = new Map(await readMilterSnippet());
  assert.equal(snippet.get('milter_default_action'), 'tempfail');
  assert.equal(snippet.get('non_smtpd_milters'), '$smtpd_milters');

  const sink = await startSmtpSink();
  t.after(() => sink.close());
  // Nothing listens on this milter port, so milter_default_action=tempfail
  // must turn every message into a 4xx: proves the snippet reached main.cf.
  const pf = await startPostfix({ relayPort: sink.port, milter: 'inet:127.0.0.1:1' });
  t.after(() => pf.stop());
  const r = await sendMail({ port: pf.smtpPort, from: 'a@example.com', to: ['b@example.org'], data: message(20) });
  assert.equal(Math.floor(r.code / 100), 4, `${r.code} ${r.text}`);
  const mainCf = await readFile(`${pf.configDir}/main.cf`, 'utf8');
  assert.match(mainCf, /^smtpd_milters = inet:127\.0\.0\.1:1$/m);
  assert.match(mainCf, /^milter_protocol = 6$/m);
});

test('sink handles pipelined commands and a DATA terminator split across chunks', async (t) => {
  const sink = await startSmtpSink();
  t.after(() => sink.close());
  const socket = net.connect(sink.port, '127.0.0.1');
  t.after(() => socket.destroy());
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (received += d));
  const until = async (re: RegExp): Promise<void> => {
    for (let i = 0; i < 200 && !re.test(received); i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(received, re);
  };
  await new Promise((r) => socket.once('connect', r));
  socket.write('EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n');
  await until(/^354 /m);
  // One byte per write, with pauses, so the terminator arrives in pieces.
  for (const ch of 'Subject: s\r\n\r\n..lead\r\n.\r\n') {
    socket.write(ch);
    await new Promise((r) => setTimeout(r, 2));
  }
  const [m] = await sink.waitFor(1, 2000);
  assert.deepEqual(m, { from: 'a@example.com', rcpts: ['b@example.org', 'c@example.org'], data: 'Subject: s\r\n\r\n.lead\r\n' });
  socket.write('QUIT\r\n');
  await until(/^221 /m);
});
