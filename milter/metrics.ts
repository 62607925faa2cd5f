/** The milter's Prometheus metrics, registered on the registry the process passes in. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export class MilterMetrics {
  private readonly sessions: Counter;
  private readonly active: Gauge;
  private readonly messages: Counter;
  private readonly verdicts: Counter<'verdict'>;
  private readonly errors: Counter<'kind'>;
  private readonly eom: Histogram;
  private readonly checks: Histogram<'check' | 'outcome'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.sessions = new Counter({ name: 'ceerion_milter_sessions_total', help: 'MTA connections accepted', registers });
    this.active = new Gauge({ name: 'ceerion_milter_sessions_active', help: 'MTA connections open now', registers });
    this.messages = new Counter({ name: 'ceerion_milter_messages_total', help: 'Messages seen (from MAIL, or the first message command the MTA sends)', registers });
    this.verdicts = new Counter({
      name: 'ceerion_milter_verdicts_total',
      help: 'Final verdicts sent, by kind',
      labelNames: ['verdict'],
      registers,
    });
    this.errors = new Counter({
      name: 'ceerion_milter_errors_total',
      help: 'Errors by kind: protocol, idle_timeout, handler, check_failed, check_timeout, internal',
      labelNames: ['kind'],
      registers,
    });
    this.eom = new Histogram({
      name: 'ceerion_milter_end_of_message_seconds',
      help: 'Time from end of message to our verdict (all checks)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.checks = new Histogram({
      name: 'ceerion_milter_check_seconds',
      help: 'Time per check and outcome (ok, failed, timeout)',
      labelNames: ['check', 'outcome'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers,
    });
  }

  sessionOpened(): void {
    this.sessions.inc();
    this.active.inc();
  }
  sessionClosed(): void {
    this.active.dec();
  }
  messageStarted(): void {
    this.messages.inc();
  }
  verdict(kind: string): void {
    this.verdicts.inc({ verdict: kind });
  }
  error(kind: string): void {
    this.errors.inc({ kind });
  }
  endOfMessageSeconds(s: number): void {
    this.eom.observe(s);
  }
  checkSeconds(check: string, outcome: 'ok' | 'failed' | 'timeout', s: number): void {
    this.checks.observe({ check, outcome }, s);
  }
}
