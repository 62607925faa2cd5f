/**
 * The milter dies mid-session (SIGKILL while SMTP sessions are open and messages are in flight).
 * Postfix must apply milter_default_action, and nothing may be lost or duplicated: every message
 * the client got a 250 for arrives at the sink exactly once, and every 4xx is retried by the client
 * (as a real MTA would) until it is accepted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startMilterProcess, type MilterProcess } from '../harness/milter-process.ts';
import { freePort, startPostfix } from '../harness/postfix.ts';
import { openSmtpSession, type SmtpSession } from '../harness/smtp-client.ts';
import { startSmtpSink } from '../harness/smtp-sink.ts';

const TOTAL = 120;
const WORKERS = 6;

const message = (i: number) =>
  `From: alice@example.com\nTo: bob@example.org\nSubject: failover ${i}\nMessage-ID: <failover-${i}@example.com>\n\nmessage ${i}\n`;

async function runFailover(defaultAction: 'tempfail' | 'accept') {
  const sink = await startSmtpSink();
  const listen = `inet:127.0.0.1:${await freePort()}`;
  let milter: MilterProcess = await startMilterProcess(listen);
  const pf = await startPostfix({ milter: listen, relayPort: sink.port, main: { milter_default_action: defaultAction } });
  try {
    const pending = Array.from({ length: TOTAL }, (_, i) => i);
    const accepted = new Set<number>();
    let tempfailed = 0;
    let killed = false;
    let restarted: Promise<void> | undefined;

    const worker = async () => {
      let session: SmtpSession | undefined;
      while (pending.length > 0) {
        const i = pending.shift()!;
        try {
          session ??= await openSmtpSession(pf.smtpPort);
          const r = await session.send({ from: 'alice@example.com', to: ['bob@example.org'], data: message(i) });
          if (r.code === 250) {
            assert.ok(!accepted.has(i), `message ${i} accepted twice`);
            accepted.add(i);
          } else if (r.code >= 400 && r.code < 500) {
            tempfailed++;
            pending.push(i); // a real client keeps the message and retries
            await session.quit().catch(() => undefined);
            session = undefined;
            await new Promise((r) => setTimeout(r, 50));
          } else {
            assert.fail(`unexpected reply ${r.code} ${r.text} for message ${i}`);
          }
        } catch (err) {
          pending.push(i);
          session = undefined;
          if (!(err instanceof Error) || !/ECONNRESET|closed|EPIPE/.test(err.message)) throw err;
        }
        // Kill the milter once a third of the mail is through, with every session still open.
        if (!killed && accepted.size >= TOTAL / 3) {
          killed = true;
          await milter.stop('SIGKILL');
          restarted = (async () => {
            await new Promise((r) => setTimeout(r, 1500));
            milter = await startMilterProcess(listen);
          })();
        }
      }
      await session?.quit().catch(() => undefined);
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    await restarted;
    assert.equal(accepted.size, TOTAL);

    const got = await sink.waitFor(TOTAL, 60_000);
    await new Promise((r) => setTimeout(r, 1000)); // let any duplicate show up
    const ids = sink.messages.map((m) => /Message-ID: <failover-(\d+)@/.exec(m.data)?.[1]);
    assert.equal(sink.messages.length, TOTAL, `count in ${TOTAL} != count out ${sink.messages.length}`);
    assert.equal(new Set(ids).size, TOTAL, 'a message was duplicated');
    assert.equal(await pf.queueSize(), 0);
    const log = await pf.log();
    return { got, tempfailed, log };
  } finally {
    await milter.stop('SIGKILL');
    await pf.stop();
    await sink.close();
  }
}

test('milter killed mid-session, milter_default_action=tempfail: 4xx, retried, nothing lost or duplicated', async (t) => {
  const { got, tempfailed, log } = await runFailover('tempfail');
  t.diagnostic(`${TOTAL} in, ${got.length} out, ${tempfailed} answers were 4xx and retried`);
  assert.ok(tempfailed > 0, 'the kill must have hit messages in flight');
  assert.match(log, /milter .*(unavailable|Connection refused|lost connection|read error|EOF)/i);
  // Every delivered message went through a milter: the first or the restarted one.
  for (const m of got) assert.match(m.data, /^X-Ceerion-Milter: /m);
});

test('milter killed mid-session, milter_default_action=accept: mail flows on unfiltered, nothing lost or duplicated', async (t) => {
  const { got, log } = await runFailover('accept');
  assert.match(log, /milter/i);
  const unfiltered = got.filter((m) => !/^X-Ceerion-Milter: /m.test(m.data)).length;
  t.diagnostic(`${TOTAL} in, ${got.length} out, ${unfiltered} passed unfiltered while the milter was down`);
  assert.ok(unfiltered > 0, 'some messages must have passed while the milter was down');
});
