import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/**
 * One JSON object per line on stdout. Stable field names: view, durationMs, outcome, trigger, err.
 * Anything that could carry a connection string is redacted.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: 'mvrefresh', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          'databaseUrl',
          'password',
          'config.databaseUrl',
          'config.http.adminToken',
          'connectionString',
          '*.password',
        ],
        censor: '***',
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
