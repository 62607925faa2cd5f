/** Per-result counters for the authentication check, shared by every instance on one registry. */
import { Counter, type Registry } from 'prom-client';

function counter(registry: Registry, name: string, help: string, labelNames: string[]): Counter<string> {
  return (registry.getSingleMetric(name) as Counter<string> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
}

export class AuthMetrics {
  private readonly spf: Counter<string>;
  private readonly dkim: Counter<string>;
  private readonly dmarc: Counter<string>;
  private readonly arc: Counter<string>;
  private readonly skips: Counter<string>;

  constructor(registry: Registry) {
    this.spf = counter(registry, 'ceerion_milter_spf_result_total', 'SPF results of inbound mail', ['result']);
    this.dkim = counter(registry, 'ceerion_milter_dkim_result_total', 'DKIM results, one per signature (none: unsigned)', ['result']);
    this.dmarc = counter(registry, 'ceerion_milter_dmarc_result_total', 'DMARC results of inbound mail', ['result']);
    this.arc = counter(registry, 'ceerion_milter_arc_result_total', 'ARC chain validation results', ['result']);
    this.skips = counter(registry, 'ceerion_milter_auth_skipped_total', 'Messages whose inbound checks were skipped, by reason', ['reason']);
  }

  record(spf: string, dkim: string[], dmarc: string, arc: string | undefined): void {
    this.spf.inc({ result: spf });
    if (dkim.length === 0) this.dkim.inc({ result: 'none' });
    for (const r of dkim) this.dkim.inc({ result: r });
    this.dmarc.inc({ result: dmarc });
    if (arc) this.arc.inc({ result: arc });
  }

  skipped(reason: string): void {
    this.skips.inc({ reason });
  }
}
