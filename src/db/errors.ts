/** SQLSTATE codes the code branches on. */
export const SqlState = {
  undefinedTable: '42P01',
  lockNotAvailable: '55P03',
  undefinedFunction: '42883',
  undefinedColumn: '42703',
  readOnlySqlTransaction: '25006',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
  idleSessionTimeout: '57P05',
  tooManyConnections: '53300',
  invalidCatalogName: '3D000',
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
} as const;

export interface PgErrorFields {
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** A PostgreSQL error as pg reports it (a plain Error with SQLSTATE fields). */
export function isPgError(err: unknown): err is Error & PgErrorFields {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
}

/** One line for a human: message, hint and SQLSTATE. */
export function describeError(err: unknown): string {
  if (isPgError(err)) {
    const parts = [err.message];
    if (err.detail) parts.push(`(${err.detail})`);
    if (err.hint) parts.push(`Hint: ${err.hint}`);
    if (err.code && /^[0-9A-Z]{5}$/.test(err.code)) parts.push(`[SQLSTATE ${err.code}]`);
    return parts.join(' ');
  }
  return err instanceof Error ? err.message : String(err);
}

/** Errors that mean the server or the connection went away, not that our statement was wrong. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (code.startsWith('08')) return true;
    if (
      code === SqlState.adminShutdown ||
      code === SqlState.crashShutdown ||
      code === SqlState.cannotConnectNow ||
      code === SqlState.idleSessionTimeout ||
      code === SqlState.tooManyConnections
    )
      return true;
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code))
      return true;
  }
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(
    err.message,
  );
}
