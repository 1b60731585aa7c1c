/** SQLSTATE codes the code branches on. */
export const SqlState = {
  undefinedTable: '42P01',
  deadlockDetected: '40P01',
  undefinedFunction: '42883',
  undefinedColumn: '42703',
  lockNotAvailable: '55P03',
  readOnlySqlTransaction: '25006',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
  idleSessionTimeout: '57P05',
  tooManyConnections: '53300',
  invalidCatalogName: '3D000',
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  protocolViolation: '08P01',
  insufficientPrivilege: '42501',
  serializationFailure: '40001',
  invalidName: '42602',
  invalidParameterValue: '22023',
} as const;

export interface PgErrorFields {
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
}

/**
 * A PostgreSQL error as pg reports it (an Error with SQLSTATE fields and a severity). Node's system errors
 * also carry a string code (EMFILE, EPIPE): they are not the server's verdict on a statement, and must never
 * be recorded on a view as its failure.
 */
export function isPgError(err: unknown): err is Error & PgErrorFields {
  if (!(err instanceof Error)) return false;
  const { code, severity } = err as { code?: unknown; severity?: unknown };
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof severity === 'string';
}

/** Errors of this process's own resources (file descriptors, memory, ports): the daemon's problem. */
const LOCAL_RESOURCE_CODES: ReadonlySet<string> = new Set([
  'EMFILE',
  'ENFILE',
  'ENOMEM',
  'ENOBUFS',
  'EADDRNOTAVAIL',
  'EAGAIN',
]);

/**
 * One line for a human: message, hint and SQLSTATE. PostgreSQL's messages end without a full stop: one is
 * added before the hint, so that the two read as separate sentences.
 */
export function describeError(err: unknown): string {
  if (isPgError(err)) {
    const parts = [err.message];
    if (err.detail) parts.push(`(${err.detail})`);
    if (err.hint) {
      const last = parts.length - 1;
      if (!/[.!?]$/.test(parts[last]!)) parts[last] += '.';
      parts.push(`Hint: ${err.hint}`);
    }
    if (err.code && /^[0-9A-Z]{5}$/.test(err.code)) parts.push(`[SQLSTATE ${err.code}]`);
    return parts.join(' ');
  }
  return err instanceof Error ? err.message : String(err);
}

/** TLS failures at connect: the server or the certificates are what they are, waiting changes nothing. */
const PERMANENT_TLS_CODES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_OSSL_PEM_NO_START_LINE',
]);

/** A connect failure that retrying cannot fix: TLS refused by the server, or certificates that do not verify. */
export function isPermanentConnectError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && PERMANENT_TLS_CODES.has(code)) return true;
  return /does not support SSL connections/i.test(err.message);
}

/**
 * Errors that mean the server or the connection went away, or that this process could not connect (out of
 * file descriptors), not that our statement was wrong.
 */
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
    // the connection could not be made or kept for a local reason: retried locally, like an outage
    if (LOCAL_RESOURCE_CODES.has(code)) return true;
  }
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(
    err.message,
  );
}
