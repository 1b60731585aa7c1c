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

export function isPostgresUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === 'postgres:' || u.protocol === 'postgresql:';
  } catch {
    return false;
  }
}
