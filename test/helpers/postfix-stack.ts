/** An SMTP sink, an in-process milter and a private Postfix between them, all stopped after the test. */
import type { TestContext } from 'node:test';
import type { Check } from '../../milter/checks/types.ts';
import { startPostfix, type PostfixInstance } from '../harness/postfix.ts';
import { startSmtpSink, type SmtpSink } from '../harness/smtp-sink.ts';
import { startTestMilter, type TestMilter } from './milter.ts';

export interface PostfixStack {
  sink: SmtpSink;
  milter: TestMilter;
  pf: PostfixInstance;
}

export async function startPostfixStack(t: TestContext, checks?: Check[]): Promise<PostfixStack> {
  const sink = await startSmtpSink();
  t.after(() => sink.close());
  const milter = await startTestMilter(checks ? { checks } : {});
  t.after(() => milter.stop());
  const pf = await startPostfix({ milter: milter.address, relayPort: sink.port });
  t.after(() => pf.stop());
  return { sink, milter, pf };
}
