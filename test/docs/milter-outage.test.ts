/**
 * docs/runbooks/milter-policy-outage.md against a private Postfix wired with the shipped lines
 * (docker/postfix/milter.cf and the policy snippet), whose milter and policy service are down:
 * - mail gets a 4xx;
 * - the runbook's fail-open blocks (postconf + postfix reload, through MAIL_CONFIG) let it through;
 * - its back-to-normal block restores the exact settings, and the 4xx returns.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { policySnippet } from '../../policyd/postfix-snippet.ts';
import { parseMainCf } from '../harness/postfix-config.ts';
import { freePort, startPostfix } from '../harness/postfix.ts';
import { sendMail, type SmtpReply } from '../harness/smtp-client.ts';
import { startSmtpSink } from '../harness/smtp-sink.ts';
import { runbookBlocks, runOk, type Block } from './runbook.ts';

const exec = promisify(execFile);
const RUNBOOK = 'milter-policy-outage.md';
const message = (i: number) => `From: sender@example.net\r\nTo: user@example.org\r\nSubject: outage ${i}\r\nMessage-ID: <o${i}@example.net>\r\n\r\nHello ${i}\r\n`;

test('milter and policy outage: 4xx while down, fail open with the runbook, back to tempfail', { timeout: 150_000 }, async (t) => {
  const blocks = runbookBlocks(RUNBOOK);
  assert.equal(blocks.length, 4, 'compare, milter fail-open, policy fail-open, back to normal');
  const [compare, milterOpen, policyOpen, restore] = blocks as [Block, Block, Block, Block];
  const [deadMilter, deadPolicy] = [await freePort(), await freePort()];
  const POLICYD = `inet:127.0.0.1:${deadPolicy}`;
  const sink = await startSmtpSink();
  t.after(() => sink.close());
  const postfix = await startPostfix({
    relayPort: sink.port,
    milter: `inet:127.0.0.1:${deadMilter}`,
    main: {
      ...Object.fromEntries(parseMainCf(policySnippet(POLICYD))),
      // The client (127.0.0.1) must not be in mynetworks, or permit_mynetworks would skip the policy check.
      mynetworks: '192.0.2.0/24',
      relay_domains: 'example.org',
      relay_transport: `relay:[127.0.0.1]:${sink.port}`,
    },
  });
  t.after(() => postfix.stop());
  const env = { MAIL_CONFIG: postfix.configDir, POLICYD };
  const postconf = async (name: string) => (await exec('postconf', ['-c', postfix.configDir, '-h', name])).stdout.trim();
  const original = { r: await postconf('smtpd_recipient_restrictions'), e: await postconf('smtpd_end_of_data_restrictions') };
  let n = 0;
  /** Send until the answer matches (a reload replaces smtpd processes as their sessions end). */
  const expectReply = async (pattern: RegExp): Promise<SmtpReply> => {
    let last: SmtpReply | undefined;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
      last = await sendMail({ port: postfix.smtpPort, from: 'sender@example.net', to: ['user@example.org'], data: message(n++) });
      if (pattern.test(`${last.code} ${last.text}`)) return last;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.fail(`expected ${pattern}, last reply ${last?.code} ${last?.text}`);
  };

  await expectReply(/^451 4\.7\.1 Service unavailable - try again later/);

  const compared = await runOk(RUNBOOK, compare, env);
  assert.deepEqual(compared.stdout.trim().split('\n'), ['milter_default_action = tempfail', 'milter_default_action = tempfail']);

  await runOk(RUNBOOK, milterOpen, env);
  assert.equal(await postconf('milter_default_action'), 'accept');
  // The milter no longer stops the mail; the dead policy service does.
  await expectReply(/^451 4\.3\.5 .*Server configuration problem/);

  const opened = await runOk(RUNBOOK, policyOpen, env);
  assert.match(opened.stdout, new RegExp(`check_policy_service \\{ ${POLICYD}, default_action=DUNNO \\}`));
  assert.equal(await postconf('smtpd_end_of_data_restrictions'), `check_policy_service { ${POLICYD}, default_action=DUNNO }`);
  assert.match(await postconf('smtpd_recipient_restrictions'), /^permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, check_policy_service \{/);
  await expectReply(/^250 /);
  await sink.waitFor(1, 15_000);

  await runOk(RUNBOOK, restore, env);
  assert.equal(await postconf('milter_default_action'), 'tempfail');
  assert.deepEqual({ r: await postconf('smtpd_recipient_restrictions'), e: await postconf('smtpd_end_of_data_restrictions') }, original);
  await expectReply(/^451 4\.7\.1 Service unavailable/);
});
