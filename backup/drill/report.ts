/** The drill report as a human table (stdout) and as JSON (`--json FILE`, for monitoring). */
import { table } from '../../core/text-table.ts';
import type { DrillReport } from './drill.ts';

const secs = (ms: number | undefined) => (ms === undefined ? '-' : (ms / 1000).toFixed(1));

export function formatDrillReport(r: DrillReport): string {
  const parts: string[] = [];
  for (const d of r.drills) {
    parts.push(`Backup ${d.backupId}${d.completedAt ? ` (completed ${d.completedAt})` : ''}: ${d.ok ? 'PASS' : 'FAIL'}`);
    parts.push(
      table(
        ['manifest s', 'download s', 'decrypt s', 'restore s', 'verify s', 'cleanup s', 'RTO s'],
        [[secs(d.phasesMs.manifest), secs(d.phasesMs.download), secs(d.phasesMs.decrypt), secs(d.phasesMs.restore), secs(d.phasesMs.verify), secs(d.phasesMs.cleanup), d.rtoSeconds.toFixed(1)]],
      ),
    );
    parts.push(table(['check', 'result', 'detail'], d.checks.map((c) => [c.check, c.ok ? 'ok' : 'FAIL', c.detail])));
    parts.push('');
  }
  const rpo = r.rpoHours === null ? 'none passed' : `${r.rpoHours.toFixed(2)} h`;
  const rto = r.rtoSeconds === null ? '-' : `${(r.rtoSeconds / 60).toFixed(2)} min`;
  parts.push(`RPO ${rpo} (target ≤ ${r.targets.rpoHours} h) · RTO ${rto} (target ≤ ${r.targets.rtoMinutes} min) · drill ${r.ok ? 'PASSED' : 'FAILED'}`);
  return parts.join('\n') + '\n';
}
