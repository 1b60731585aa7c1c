/**
 * Error texts of PostgreSQL can quote the row values that caused them (`invalid input syntax for type
 * integer: "SSN 078-05-1120"`, `Key (id)=(42) already exists`). Unauthenticated endpoints show them with
 * every quoted or parenthesized value replaced; the database, `mvrefresh status` and requests with the
 * admin token keep the full text.
 */
export function redactErrorText(text: string | null): string | null {
  if (text === null) return null;
  return text
    .replace(/"(?:[^"]|"")*"/g, '"…"')
    .replace(/'(?:[^']|'')*'/g, "'…'")
    .replace(/=\((?:[^()]|\([^()]*\))*\)/g, '=(…)')
    .replace(/:\s+[^:"'\s][^:]*$/, (m) => (/\d/.test(m) ? ': …' : m));
}
