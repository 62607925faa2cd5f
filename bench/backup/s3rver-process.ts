// s3rver in a process of its own for the backup benchmark, so the server's CPU is not counted in
// (or competing on the event loop of) the process being measured. Prints its backup.s3 config as
// one JSON line, then serves until SIGTERM.
import { startS3rver } from '../../test/harness/s3rver.ts';

const s3 = await startS3rver();
process.stdout.write(JSON.stringify(s3.config) + '\n');
process.once('SIGTERM', () => {
  void s3.close().then(() => process.exit(0));
});
