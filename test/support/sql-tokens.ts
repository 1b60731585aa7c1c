/**
 * A small tokenizer for PL/pgSQL bodies (pg_proc.prosrc), enough to find names that a search_path can
 * redirect: function calls, type names (declarations, ::casts) and operators that are not schema-qualified.
 * Comments and string literals are dropped first, so that text inside them is never judged.
 */
export type Token = { kind: 'word' | 'op' | 'punct'; text: string };

const OPERATOR_CHARS = '+-*/<>=~!@#%^&|`?';

export function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    const rest = src.slice(i);
    if (/\s/.test(c)) i += 1;
    else if (rest.startsWith('--')) i = indexOrEnd(src, '\n', i);
    else if (rest.startsWith('/*')) i = indexOrEnd(src, '*/', i + 2) + 2;
    else if (c === "'" || ((c === 'E' || c === 'e') && src[i + 1] === "'")) {
      i = src.indexOf("'", i) + 1;
      for (;;) {
        const end = src.indexOf("'", i);
        if (end < 0) return tokens;
        if (src[end + 1] === "'") i = end + 2;
        else if (src[end - 1] === '\\' && (c === 'E' || c === 'e')) i = end + 1;
        else {
          i = end + 1;
          break;
        }
      }
      tokens.push({ kind: 'punct', text: "''" });
    } else if (/^\$[A-Za-z_]*\$/.test(rest)) {
      const tag = /^\$[A-Za-z_]*\$/.exec(rest)![0];
      i = indexOrEnd(src, tag, i + tag.length) + tag.length;
      tokens.push({ kind: 'punct', text: "''" });
    } else if (c === '"') {
      const end = src.indexOf('"', i + 1);
      tokens.push({ kind: 'word', text: src.slice(i, end + 1) });
      i = end + 1;
    } else if (/[A-Za-z_]/.test(c)) {
      const word = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(rest)![0];
      tokens.push({ kind: 'word', text: word });
      i += word.length;
    } else if (/[0-9]/.test(c)) {
      i += /^[0-9.eE]+/.exec(rest)![0].length;
      tokens.push({ kind: 'punct', text: '0' });
    } else if (rest.startsWith('::') || rest.startsWith(':=')) {
      tokens.push({ kind: 'punct', text: rest.slice(0, 2) });
      i += 2;
    } else if (OPERATOR_CHARS.includes(c)) {
      let j = i;
      while (j < src.length && OPERATOR_CHARS.includes(src[j]!)) j += 1;
      tokens.push({ kind: 'op', text: src.slice(i, j) });
      i = j;
    } else {
      tokens.push({ kind: 'punct', text: c });
      i += 1;
    }
  }
  return tokens;
}

function indexOrEnd(src: string, needle: string, from: number): number {
  const at = src.indexOf(needle, from);
  return at < 0 ? src.length : at;
}

/** Words followed by "(" that are syntax, not a function looked up in the search_path. */
const SYNTAX_BEFORE_PAREN = new Set([
  'if',
  'elsif',
  'in',
  'exists',
  'values',
  'coalesce',
  'nullif',
  'greatest',
  'least',
  'filter',
  'any',
  'all',
  'and',
  'or',
  'not',
  'when',
  'then',
  'else',
  'return',
  'select',
  'where',
  'on',
  'using',
  'over',
  'array',
  'row',
  'case',
  'is',
  'perform',
  'into',
  'returning',
  'as',
  'from',
  'while',
  'loop',
  'operator',
  'with',
  'lateral',
  'join',
  'by',
  'distinct',
  'set',
]);

/** Declared variables' names come first on their line; PL/pgSQL words that may follow them. */
const DECLARATION_WORDS = new Set(['constant', 'not', 'null', 'default', 'collate']);

/**
 * What in a PL/pgSQL body the search_path could redirect: an unqualified function call, type name
 * (a DECLARE section's declarations, a ::cast) or operator (anything outside OPERATOR(schema.op), except
 * the `*` of count(*) and a select list). Returns one line per finding.
 */
export function unqualifiedNames(prosrc: string): string[] {
  const t = tokenize(prosrc);
  const found: string[] = [];
  const qualified = (k: number) => t[k + 1]?.text === '.';
  const afterDot = (k: number) => t[k - 1]?.text === '.';
  // DECLARE ... BEGIN: each declaration is `name type [...];`
  const declare = t.findIndex((x) => x.kind === 'word' && x.text.toLowerCase() === 'declare');
  const begin = t.findIndex((x) => x.kind === 'word' && x.text.toLowerCase() === 'begin');
  if (declare >= 0 && begin > declare) {
    let start = declare + 1;
    for (let k = start; k < begin; k += 1) {
      if (t[k]!.text !== ';') continue;
      const type = start + 1;
      if (t[type] && !DECLARATION_WORDS.has(t[type].text.toLowerCase()) && !qualified(type))
        found.push(`declaration of ${t[start]!.text}: type ${t[type].text}`);
      start = k + 1;
    }
  }
  for (let k = 0; k < t.length; k += 1) {
    const x = t[k]!;
    if (x.kind === 'word' && t[k + 1]?.text === '(' && !afterDot(k)) {
      if (!SYNTAX_BEFORE_PAREN.has(x.text.toLowerCase())) found.push(`function ${x.text}`);
    } else if (x.text === '::') {
      const type = k + 1;
      if (t[type] && !qualified(type)) found.push(`cast to ${t[type].text}`);
    } else if (x.kind === 'op') {
      const inOperator =
        t[k - 1]?.text === '.' && t[k - 3]?.text === '(' && /^operator$/i.test(t[k - 4]?.text ?? '');
      const star =
        x.text === '*' &&
        (t[k - 1]?.text === '(' || t[k - 1]?.text === '.' || /^select$/i.test(t[k - 1]?.text ?? ''));
      if (!inOperator && !star) found.push(`operator ${x.text}`);
    }
  }
  return found;
}

/**
 * A procedure's transactions each start by pinning search_path (a SET clause would forbid COMMIT): the
 * body's first statement and the first after every COMMIT must be this call (after SET TRANSACTION, which
 * must come first in a transaction and names nothing).
 */
export const PIN_STATEMENT =
  /^\s*(SET\s+TRANSACTION\s+ISOLATION\s+LEVEL\s+[A-Z ]+;\s*)?PERFORM\s+pg_catalog\.set_config\('search_path',\s*'pg_catalog, pg_temp',\s*true\)\s*;/i;

/** The procedure body's transactions that do not begin with PIN_STATEMENT, by index (0: the first). */
export function unpinnedTransactions(prosrc: string): number[] {
  const body = prosrc.replace(/--[^\n]*/g, '');
  const afterBegin = /\bBEGIN\b/i.exec(body.slice(body.search(/\bDECLARE\b/i) + 1));
  if (!afterBegin) return [0];
  const start = body.indexOf(afterBegin[0], body.search(/\bDECLARE\b/i) + 1) + afterBegin[0].length;
  const parts = body.slice(start).split(/\bCOMMIT\s*;(?!\s*RETURN\s*;)/i);
  // a COMMIT followed by RETURN ends the call, not a transaction; the text after the last COMMIT may be
  // only the body's END
  return parts
    .map((p, i) => ({ p, i }))
    .filter(
      ({ p, i }) =>
        !PIN_STATEMENT.test(p) &&
        !(i === parts.length - 1 && /^\s*(END\s*(IF|LOOP)?\s*;\s*)*END\s*;?\s*$/i.test(p)),
    )
    .map(({ i }) => i);
}
