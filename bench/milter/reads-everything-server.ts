/**
 * `ceerion milter` plus one check that reads every stage (connect, HELO, envelope, headers, body),
 * as the authentication checks will: the benchmark's "full protocol path" server.
 *   node --import tsx bench/milter/reads-everything-server.ts LISTEN
 */
import { parseConfig } from '../../core/config/load.ts';
import { silentLogger } from '../../core/log.ts';
import { createRegistry } from '../../core/metrics.ts';
import type { Check } from '../../milter/checks/types.ts';
import { createMilterServer } from '../../milter/service.ts';

let bytes = 0;
const readsEverything: Check = {
  name: 'reads-everything',
  wantsConnection: true,
  wantsEnvelope: true,
  wantsHeaders: true,
  wantsBody: true,
  body: (_ctx, chunk) => void (bytes += chunk.length),
};
const config = parseConfig({ hostname: 'mx.test', metrics: { enabled: false }, milter: { listen: process.argv[2] } });
const server = createMilterServer(config, { log: silentLogger, registry: createRegistry(false), checks: [readsEverything] });
await server.start();
process.on('SIGTERM', () => void server.stop(1000).then(() => process.exit(0)));
