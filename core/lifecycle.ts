/**
 * Process lifecycle: services register a stop function; SIGTERM/SIGINT run them all once, each
 * bounded by its own grace period inside, then the process exits.
 */
import type { Logger } from './log.ts';

export interface Stoppable {
  name: string;
  stop(): Promise<void>;
}

export class Lifecycle {
  private readonly services: Stoppable[] = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  add(service: Stoppable): void {
    this.services.push(service);
  }

  stopAll(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ reason }, 'stopping services');
      await Promise.allSettled(
        this.services.map(async (s) => {
          try {
            await s.stop();
            this.log.info({ stopped: s.name }, 'service stopped');
          } catch (err) {
            this.log.error({ stopped: s.name, err }, 'service failed to stop cleanly');
          }
        }),
      );
    })();
    return this.stopping;
  }

  /** Stop on SIGTERM/SIGINT and exit; a second signal exits at once. */
  handleSignals(exit: (code: number) => void = (c) => process.exit(c)): void {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.stopping) {
        this.log.warn({ signal }, 'second signal, exiting now');
        exit(1);
        return;
      }
      void this.stopAll(signal).then(() => exit(0));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
}
