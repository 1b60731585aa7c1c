import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { describeError } from '../db/errors.js';
import { scrubSecret } from '../db/url.js';
import { Daemon, StartupError } from './daemon.js';

/** Exit codes of `mvrefresh run`. */
export const RunExit = { ok: 0, failed: 1, config: 2, schemaIncompatible: 3, forced: 130 } as const;
/** After the first signal, the process exits by this much beyond the grace period even if something hangs. */
const WATCHDOG_MARGIN_MS = 15_000;
/** A second signal gives running refreshes this long to be cancelled before the process exits. */
const FORCED_EXIT_MS = 1000;

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  databaseUrl?: string | undefined;
}

/**
 * `mvrefresh run`: config, logger, daemon, signals. First SIGTERM / SIGINT: graceful stop, exit 0.
 * Second: cancel running refreshes and exit at once. An unref'd watchdog ends a shutdown that hangs.
 */
export async function runDaemon(options: RunOptions): Promise<number> {
  let config;
  const deprecations: string[] = [];
  try {
    config = loadConfig({
      env: options.env,
      overrides: { databaseUrl: options.databaseUrl },
      onDeprecation: (message) => deprecations.push(message),
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mvrefresh run: ${err.message}\n`);
      return RunExit.config;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  for (const message of deprecations) logger.warn({ event: 'deprecated_setting' }, message);
  const daemon = new Daemon(config, logger);

  return new Promise<number>((resolve) => {
    let signalled = false;
    const finish = (code: number) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.off('SIGHUP', onHangup);
      process.off('SIGUSR1', onInspectorSignal);
      process.off('warning', onWarning);
      process.off('uncaughtException', onFatal);
      process.off('unhandledRejection', onFatal);
      resolve(code);
    };
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn({ event: 'signal', signal, immediate: true }, 'second signal: exiting now');
        const exit = setTimeout(() => process.exit(RunExit.forced), FORCED_EXIT_MS);
        exit.unref();
        void daemon.terminateNow().finally(() => process.exit(RunExit.forced));
        return;
      }
      signalled = true;
      logger.info({ event: 'signal', signal }, 'shutting down gracefully');
      const watchdog = setTimeout(() => {
        logger.fatal({ event: 'shutdown_timeout' }, 'shutdown did not finish in time; exiting');
        process.exit(RunExit.failed);
      }, config.shutdownGraceMs + WATCHDOG_MARGIN_MS);
      watchdog.unref();
      daemon.stop().then(
        () => finish(RunExit.ok),
        () => finish(RunExit.failed),
      );
    };
    // Node's default for SIGHUP ends the process at once (exit 129, no log line, cycles cut short). The
    // configuration is validated once into a frozen object, so there is nothing to reload: say so and go on.
    const onHangup = () =>
      logger.info(
        { event: 'signal', signal: 'SIGHUP', action: 'ignored' },
        'SIGHUP ignored: the configuration is read at start only; restart to apply changes',
      );
    // the CLI keeps SIGUSR1 from opening the inspector (cli.ts); said here, since nothing else happens
    const onInspectorSignal = () =>
      logger.warn(
        { event: 'signal', signal: 'SIGUSR1', action: 'ignored' },
        'SIGUSR1 ignored: the Node inspector stays closed',
      );
    const onWarning = (warning: Error) =>
      logger.warn(
        {
          event: 'runtime_warning',
          warning: warning.name,
          err: scrubSecret(warning.message, config.databaseUrl),
        },
        'runtime warning',
      );
    // a bug must not leave a half-working daemon behind: log it, release what can be released, exit
    const onFatal = (err: unknown) => {
      logger.fatal(
        {
          event: 'fatal',
          err: scrubSecret(describeError(err), config.databaseUrl),
          stack: (err as Error)?.stack,
        },
        'unexpected error',
      );
      const watchdog = setTimeout(() => process.exit(RunExit.failed), FORCED_EXIT_MS * 5);
      watchdog.unref();
      void daemon.stop().finally(() => finish(RunExit.failed));
    };
    // a breaking migration ran under this daemon: it has stopped and logged why
    daemon.once('ended', () => finish(RunExit.schemaIncompatible));
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', onHangup);
    process.on('SIGUSR1', onInspectorSignal);
    // Node prints process warnings (the pg driver's about sslmode, for one) as multi-line text on stderr;
    // the log is one JSON object per line
    process.removeAllListeners('warning');
    process.on('warning', onWarning);
    process.on('uncaughtException', onFatal);
    process.on('unhandledRejection', onFatal);

    daemon.start().catch((err: unknown) => {
      const message = scrubSecret(
        err instanceof StartupError ? err.message : describeError(err),
        config.databaseUrl,
      );
      logger.fatal({ event: 'startup_failed', err: message }, `cannot start: ${message}`);
      finish(RunExit.failed);
    });
  });
}
