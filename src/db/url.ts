/** Connection strings with their secrets removed, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of ['password', 'sslpassword', 'sslkey'])
      if (u.searchParams.has(key)) u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    return '<unparseable connection string>';
  }
}

/** Removes every occurrence of the URL's password from a text (pg error messages can quote it). */
export function scrubSecret(text: string, url: string | undefined): string {
  if (!url) return text;
  let password: string | undefined;
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {
    return text;
  }
  if (!password) return text;
  return text.split(password).join('***');
}

/** The sslmode values the pg driver understands; any other it would silently treat as no TLS preference. */
const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];
/** Parameters naming files the driver reads at connect. */
const SSL_FILES = ['sslrootcert', 'sslcert', 'sslkey'];

/**
 * What is permanently wrong with a connection string's TLS parameters, or undefined: an unknown sslmode,
 * a certificate or key file that is missing or not a regular file. Found before the first connect, so that
 * start-up fails at once instead of retrying a mistake for the whole start-up timeout.
 */
export function connectionStringProblem(
  url: string,
  isRegularFile: (path: string) => boolean,
): string | undefined {
  let params: URLSearchParams;
  try {
    params = new URL(url).searchParams;
  } catch {
    return undefined;
  }
  const mode = params.get('sslmode');
  if (mode !== null && !SSL_MODES.includes(mode))
    return `sslmode=${JSON.stringify(mode)} is not one of ${SSL_MODES.join(', ')}`;
  for (const key of SSL_FILES) {
    const path = params.get(key);
    if (path !== null && !isRegularFile(path)) return `${key}=${path} is not a readable regular file`;
  }
  return undefined;
}

export function isPostgresUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === 'postgres:' || u.protocol === 'postgresql:';
  } catch {
    return false;
  }
}
