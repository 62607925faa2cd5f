// One measured backup or drill in a fresh process: prints {ms, maxRssMb, ...} as JSON, so the
// benchmark gets the peak RSS of exactly that work. argv: run|drill CONFIG_JSON_FILE
import { readFileSync } from 'node:fs';
import { configSchema } from '../../core/config/schema.ts';
import { silentLogger } from '../../core/log.ts';
import { createKeyProvider } from '../../backup/keys/index.ts';
import { createObjectStore } from '../../backup/storage/index.ts';
import { runBackup } from '../../backup/run.ts';
import { runDrill } from '../../backup/drill/drill.ts';

const [mode, file] = process.argv.slice(2);
const config = configSchema.parse(JSON.parse(readFileSync(file!, 'utf8')));
const deps = { store: createObjectStore(config.backup.s3, { log: silentLogger }), keys: createKeyProvider(config.backup.keys), log: silentLogger };
const t0 = performance.now();
let out: Record<string, unknown>;
if (mode === 'run') {
  const r = await runBackup(config, deps);
  const db = r.manifest.objects.find((o) => o.kind === 'database')!;
  out = { id: r.manifest.id, plaintextBytes: db.plaintextBytes, storedBytes: db.size };
} else {
  const r = await runDrill(config, deps, { fallbacks: 0 });
  const d = r.drills[0]!;
  out = { ok: r.ok, rtoSeconds: r.rtoSeconds, phasesMs: d.phasesMs, error: d.error, failed: d.checks.filter((c) => !c.ok) };
}
out.ms = performance.now() - t0;
out.maxRssMb = process.resourceUsage().maxRSS / 1024;
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
