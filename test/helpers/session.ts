/** Milter sessions over real sockets for tests: a milter with tracked clients, ready clients, messages, metrics. */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { LOCAL_CONNECT, MilterClient, POSTFIX_OFFER, type MessageSpec } from '../../milter/client/milter-client.ts';
import { startTestMilter, type TestMilter } from './milter.ts';

export type StartOptions = NonNullable<Parameters<typeof startTestMilter>[0]>;

/** A milter plus the clients a test opens; all are closed (clients first) when the test ends. */
export async function setup(t: TestContext, opts: StartOptions = {}) {
  const m = await startTestMilter(opts);
  const clients: MilterClient[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    await m.stop();
  });
  const connect = async () => {
    const c = await MilterClient.connect(m.address);
    clients.push(c);
    return c;
  };
  return { m, connect };
}

/** A client that has negotiated like Postfix (or with `offer`) and sent CONNECT and HELO. */
export async function ready(connect: () => Promise<MilterClient>, offer = POSTFIX_OFFER) {
  const c = await connect();
  await c.negotiate(offer);
  await c.connectStage(LOCAL_CONNECT);
  await c.helo('client.example');
  return c;
}

/**
 * The message the session tests send: Alice to Bob, a subject and a one-line body. No macros: each
 * test file passes its own (its queue id) and any other field it changes; `over` replaces whole fields.
 */
export function messageSpec(over: Partial<MessageSpec> = {}): MessageSpec {
  return {
    from: '<alice@example.org>',
    rcpts: ['<bob@example.net>'],
    headers: [['Subject', 'hello']],
    body: 'Hello Bob.\r\n',
    ...over,
  };
}

/** The sum of a metric's values over the series matching `labels` (all of them when none are given). */
export async function counter(m: TestMilter, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = m.registry.getSingleMetric(name);
  assert.ok(metric, `${name} is registered`);
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}
