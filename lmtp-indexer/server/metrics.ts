/** Prometheus metrics of the LMTP path: per-recipient outcomes, index results and latency. */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { DeliveryOutcome } from './delivery.ts';

export class LmtpMetrics {
  readonly recipients: Counter<'result'>;
  readonly indexed: Counter<'status'>;
  readonly failed: Counter;
  readonly duration: Histogram;

  constructor(registry: Registry) {
    this.recipients = new Counter({
      name: 'lmtp_recipients_total',
      help: 'Recipients answered after DATA, by class: accepted, duplicate (already delivered), tempfail (4xx), reject (5xx)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.indexed = new Counter({
      name: 'lmtp_index_writes_total',
      help: 'Index writes of delivered messages: indexed (PostgreSQL) or backlogged (local backlog, replayed later)',
      labelNames: ['status'],
      registers: [registry],
    });
    this.failed = new Counter({ name: 'lmtp_delivery_errors_total', help: 'Transactions answered 451 for every recipient by a local error', registers: [registry] });
    this.duration = new Histogram({
      name: 'lmtp_delivery_duration_seconds',
      help: 'From the end of DATA to our replies (relay to Dovecot + index write)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
  }

  observe(outcome: DeliveryOutcome, seconds: number): void {
    this.duration.observe(seconds);
    if (outcome.duplicates) this.recipients.inc({ result: 'duplicate' }, outcome.duplicates);
    for (const r of outcome.replies) {
      if (r.code >= 400) this.recipients.inc({ result: r.code >= 500 ? 'reject' : 'tempfail' });
    }
    const accepted = outcome.accepted;
    if (accepted) this.recipients.inc({ result: 'accepted' }, accepted);
    if (outcome.index !== 'none') this.indexed.inc({ status: outcome.index });
  }
}
