import { describe, expect, it } from 'vitest';
import { redactErrorText } from '../src/daemon/http/redact.js';

/** Row values are written with this letter, which no message template holds: any in the output leaked. */
const SECRET = 'ж';
/** What can open or close a value, and what a value may hold besides. */
const ALPHABET = ['"', "'", '(', ')', ':', ' ', ': ', '=', ',', SECRET, SECRET, SECRET, '""', '\n'];

/** A small deterministic generator: the same cases every run. */
function generator(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function value(random: () => number): string {
  const n = 1 + Math.floor(random() * 90);
  let v = SECRET;
  for (let i = 0; i < n; i += 1) v += ALPHABET[Math.floor(random() * ALPHABET.length)]!;
  return v;
}

/** Error texts as PostgreSQL, describeError() and duplicate_keys() (before and after issue 23) build them. */
const TEMPLATES: ((a: string, b: string) => { text: string; sqlstate: string })[] = [
  // duplicate_keys() as it was: values cut at 60 characters
  (a, b) => ({
    text: `new data for materialized view "v" contains duplicate rows without any null columns (duplicated keys: (region)=(${a.slice(0, 60)}) 2 times, (region)=(${b.slice(0, 60)}) 3 times)`,
    sqlstate: '21000',
  }),
  (a, b) => ({
    text: `new data for materialized view "v" contains duplicate rows without any null columns (duplicated keys: (region, kind)=(${a.slice(0, 60)}) 2 times, (region, kind)=(${b}) 2 times)`,
    sqlstate: '21000',
  }),
  (a) => ({ text: `invalid input syntax for type integer: "${a}"`, sqlstate: '22P02' }),
  (a) => ({
    text: `duplicate key value violates unique constraint "c" (Key (id)=(${a}) already exists.) [SQLSTATE 23505]`,
    sqlstate: '23505',
  }),
  (a) => ({ text: `value "${a}" is out of range for type integer`, sqlstate: '22003' }),
  (a, b) => ({
    text: `new row for relation "t" violates check constraint "c" (Failing row contains (1, ${a}, ${b}).) [SQLSTATE 23514]`,
    sqlstate: '23514',
  }),
  (a) => ({ text: `invalid input value for enum mood: '${a}'`, sqlstate: '22P02' }),
  (a) => ({ text: `malformed array literal: ${a}`, sqlstate: '22P02' }),
  // a value that imitates the structural summary
  (a) => ({
    text: `invalid input syntax for type integer: "${a} (duplicated keys on (${a}): 1 key value repeated, up to 2 times; GROUP BY x HAVING count(*) > 1 on the view's query lists them)`,
    sqlstate: '21000',
  }),
];

describe('redaction of error texts on unauthenticated routes', () => {
  it('shows no character of any row value across 20 000 fuzzed texts (unbalanced quotes at a cut, ")" in the next key, quotes inside values)', () => {
    const random = generator(23);
    const leaks: string[] = [];
    for (let i = 0; i < 20_000; i += 1) {
      const { text, sqlstate } = TEMPLATES[i % TEMPLATES.length]!(value(random), value(random));
      const shown = redactErrorText(text, sqlstate)!;
      if (shown.includes(SECRET)) leaks.push(`${text}\n  -> ${shown}`);
    }
    expect(leaks.slice(0, 3)).toEqual([]);
  });

  it('keeps what names no value: the message, and of a 21000 summary its counts', () => {
    expect(redactErrorText('canceling statement due to lock timeout')).toBe(
      'canceling statement due to lock timeout',
    );
    expect(redactErrorText('relation "public.t" does not exist')).toBe('relation … does not exist');
    expect(
      redactErrorText(
        `new data for materialized view "public.v" contains duplicate rows without any null columns (duplicated keys on (region, "Kind"): 2 key values repeated, up to 3 times; GROUP BY region, "Kind" HAVING count(*) > 1 on the view's query lists them)`,
        '21000',
      ),
    ).toBe(
      'new data for materialized view … contains duplicate rows without any null columns (duplicated keys: 2 key values repeated, up to 3 times)',
    );
    expect(redactErrorText(null)).toBeNull();
  });
});
