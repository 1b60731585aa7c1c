/** The environment variable that gives the LISTEN connection its own URL (config key listenUrl). */
export const LISTEN_URL_ENV = 'MVREFRESH_LISTEN_URL';

/**
 * The plain diagnosis of a LISTEN connection that answers but receives no notification from other
 * sessions: what it probably is, what it costs, and the setting that fixes it. One text for the daemon's
 * log line, /readyz and `mvrefresh status`.
 */
export function listenDiagnosis(opts: { separateListenUrl: boolean; sweepIntervalMs: number }): string {
  const which = opts.separateListenUrl
    ? `the LISTEN connection (${LISTEN_URL_ENV})`
    : 'the LISTEN connection';
  const fix = opts.separateListenUrl
    ? `point ${LISTEN_URL_ENV} at the database itself or at a session-mode pool`
    : `set ${LISTEN_URL_ENV} (listenUrl) to a URL of the database itself or of a session-mode pool; DATABASE_URL may stay on the transaction pooler`;
  return (
    `${which} answers but receives no notification: it appears to go through a transaction pooler ` +
    `(PgBouncer pool_mode=transaction, a managed service's transaction-mode pooler); ` +
    `refreshes fall back to the sweep, every ${opts.sweepIntervalMs} ms; to fix it, ${fix}`
  );
}
