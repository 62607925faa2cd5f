/** The main.cf lines we print and ship agree with what the milter negotiates. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { REQUESTED_MACROS } from '../../milter/pipeline-handler.ts';
import { postfixMilterAddress, postfixSnippet, SNIPPET_FILE } from '../../milter/postfix-snippet.ts';
import { MacroStage } from '../../milter/protocol/constants.ts';
import { parseMainCf } from '../harness/postfix-config.ts';

const MAIN_CF_FOR_STAGE: Record<number, string> = {
  [MacroStage.CONNECT]: 'milter_connect_macros',
  [MacroStage.HELO]: 'milter_helo_macros',
  [MacroStage.ENVFROM]: 'milter_mail_macros',
  [MacroStage.ENVRCPT]: 'milter_rcpt_macros',
  [MacroStage.DATA]: 'milter_data_macros',
  [MacroStage.EOH]: 'milter_end_of_header_macros',
  [MacroStage.EOM]: 'milter_end_of_data_macros',
};

test('milter.cf asks for the same macros per stage as the OPTNEG reply (SETSYMLIST)', () => {
  const settings = new Map(parseMainCf(readFileSync(SNIPPET_FILE, 'utf8')));
  for (const [stage, key] of Object.entries(MAIN_CF_FOR_STAGE)) {
    const requested = REQUESTED_MACROS[Number(stage) as keyof typeof REQUESTED_MACROS] ?? [];
    assert.deepEqual(settings.get(key)?.split(/\s+/).sort(), [...requested].sort(), key);
  }
});

test('the printed snippet points Postfix at the address the milter listens on', () => {
  assert.match(postfixSnippet('inet:127.0.0.1:8891'), /^smtpd_milters = inet:127\.0\.0\.1:8891$/m);
  assert.match(postfixSnippet('inet:0.0.0.0:9999'), /^smtpd_milters = inet:127\.0\.0\.1:9999$/m);
  assert.match(postfixSnippet('inet:127.0.0.1:8891'), /^non_smtpd_milters = \$smtpd_milters$/m);
  assert.match(postfixSnippet('inet:127.0.0.1:8891'), /^milter_default_action = tempfail$/m);
  // Chrooted smtpd resolves unix: paths inside /var/spool/postfix.
  assert.equal(postfixMilterAddress('unix:/var/spool/postfix/ceerion/milter.sock'), 'unix:/ceerion/milter.sock');
  assert.match(postfixSnippet('unix:/run/ceerion/milter.sock'), /outside \/var\/spool\/postfix/);
});
