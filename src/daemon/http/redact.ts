/**
 * Error texts of PostgreSQL can quote the row values that caused them (`invalid input syntax for type
 * integer: "SSN 078-05-1120"`, `Key (id)=(42) already exists`), and PostgreSQL quotes them without
 * escaping: a value may itself hold quotes, parentheses or colons, so no parser can tell where it ends.
 * Unauthenticated endpoints therefore show the text with whole regions replaced, each from the first
 * character that can open a value to the last that can close one: from the first quote (" or ') to the
 * last quote, from the first ( to the last ) (to the end when none follows), and from the first ": " to the
 * end. A value printed between delimiters has both of them inside its region, so none survives however it
 * is quoted. The database, `mvrefresh status` and requests with the admin token keep the full text.
 */
export function redactErrorText(text: string | null, sqlstate?: string | null): string | null {
  if (text === null) return null;
  // a 21000 failure's summary (routines/duplicate_keys.sql) is numbers only once its column names are dropped
  const summary = sqlstate === CARDINALITY_VIOLATION ? DUPLICATE_SUMMARY.exec(text) : null;
  const message = summary ? text.slice(0, summary.index) : text;
  const spans: [number, number][] = [];
  const quotes = [...message.matchAll(/["']/g)].map((m) => m.index);
  if (quotes.length > 0) spans.push([quotes[0]!, quotes.length > 1 ? quotes.at(-1)! + 1 : message.length]);
  const open = message.indexOf('(');
  if (open >= 0) {
    const close = message.lastIndexOf(')');
    spans.push([open, close > open ? close + 1 : message.length]);
  }
  const colon = message.search(/:\s/);
  if (colon >= 0) spans.push([colon + 1, message.length]);
  let redacted = '';
  let at = 0;
  for (const [start, end] of merge(spans)) {
    redacted += `${message.slice(at, start)}…`;
    at = end;
  }
  redacted += message.slice(at);
  if (!summary) return redacted;
  const [, values, , most] = summary;
  return `${redacted} (duplicated keys: ${values} key value${values === '1' ? '' : 's'} repeated, up to ${most} times)`;
}

const CARDINALITY_VIOLATION = '21000';
/** The suffix duplicate_keys() appends; only its numbers are kept. */
const DUPLICATE_SUMMARY =
  / \(duplicated keys on \(.*\): (\d+) key (value|values) repeated, up to (\d+) times; GROUP BY .* HAVING count\(\*\) > 1 on the view's query lists them\)$/s;

/** Overlapping or touching spans as one, in order. */
function merge(spans: [number, number][]): [number, number][] {
  const sorted = [...spans].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [s, e] of sorted) {
    const last = out.at(-1);
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}
