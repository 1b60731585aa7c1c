/**
 * What bench:incremental does to views through the built CLI (`mvrefresh watch`, with or without
 * `--incremental`, `unwatch --all`) and the checks it makes on them (clean in mvrefresh.status, equal to
 * their query).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { packageRoot } from '../../src/paths.js';
import type { ViewSpec } from './workload.js';

const execFileP = promisify(execFile);
export const CLI = join(packageRoot, 'dist', 'src', 'bin.js');
/** How often the checks look at mvrefresh.status while they wait for views to be clean. */
const CLEAN_POLL_MS = 100;
/** The CLI's refusal of an option it does not know (node:util parseArgs, strict). */
const UNKNOWN_INCREMENTAL = /unknown option '--incremental'/i;

export interface CliResult {
  code: number;
  output: string;
}

/** Runs the built CLI against `url`; its exit code and its output (stdout then stderr), never throws on a failure exit. */
export async function cli(url: string, ...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [CLI, ...args, '--database-url', url]);
    return { code: 0, output: `${stdout}${stderr}`.trim() };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; message: string };
    const code = typeof e.code === 'number' ? e.code : 1;
    return { code, output: `${e.stdout ?? ''}${e.stderr ?? e.message}`.trim() };
  }
}

/** Runs the CLI; throws with its output when it fails. */
export async function cliOk(url: string, ...args: string[]): Promise<string> {
  const r = await cli(url, ...args);
  if (r.code !== 0) throw new Error(`mvrefresh ${args.join(' ')} exited with ${r.code}: ${r.output}`);
  return r.output;
}

/** How one view was watched: the mode asked for and, when it is not what the view got, why. */
export interface Watched {
  view: string;
  incremental: boolean;
  /** Why a view asked to be incremental is watched in full (the CLI's refusal), if it is. */
  refused?: string;
}

/** The first line of the CLI's message, without its usage hint. */
const firstLine = (output: string) => output.split('\n')[0]?.replace(/^mvrefresh: /, '') ?? '';

/**
 * Watches `view`: with `incremental`, `watch --incremental`, and when the CLI refuses (the view cannot be
 * incremental), a plain `watch` with the refusal noted. Undefined when the CLI does not know the flag.
 */
export async function watchView(
  url: string,
  view: ViewSpec,
  incremental: boolean,
): Promise<Watched | undefined> {
  const name = `public.${view.name}`;
  if (incremental) {
    const r = await cli(url, 'watch', name, '--incremental');
    if (r.code === 0) return { view: view.name, incremental: true };
    if (UNKNOWN_INCREMENTAL.test(r.output)) return undefined;
    await cliOk(url, 'watch', name);
    return { view: view.name, incremental: false, refused: firstLine(r.output) };
  }
  await cliOk(url, 'watch', name);
  return { view: view.name, incremental: false };
}

/** Watches every view in order; undefined (and none watched) when the CLI does not know `--incremental`. */
export async function watchAll(
  url: string,
  views: readonly ViewSpec[],
  incremental: boolean,
): Promise<Watched[] | undefined> {
  const out: Watched[] = [];
  for (const v of views) {
    const w = await watchView(url, v, incremental);
    if (!w) {
      if (out.length > 0) await cliOk(url, 'unwatch', '--all');
      return undefined;
    }
    out.push(w);
  }
  return out;
}

/**
 * Each watched view's mode as mvrefresh.status shows it (its `mode` column, once there is one), else
 * undefined.
 */
export async function statusModes(c: pg.ClientBase): Promise<Map<string, string>> {
  const { rows } = await c.query<{ view: string; mode: string | null }>(
    `SELECT s.view_name AS view, to_jsonb(s) ->> 'mode' AS mode FROM mvrefresh.status s`,
  );
  return new Map(rows.flatMap((r) => (r.mode === null ? [] : [[r.view, r.mode]])));
}

/**
 * Waits until none of `views` is dirty in mvrefresh.status, for at most limitMs; the milliseconds it took
 * per view (missing: still dirty at the limit).
 */
export async function waitClean(
  c: pg.ClientBase,
  views: readonly string[],
  limitMs: number,
): Promise<Map<string, number>> {
  const t0 = performance.now();
  const done = new Map<string, number>();
  while (done.size < views.length && performance.now() - t0 < limitMs) {
    const { rows } = await c.query<{ view: string; dirty: boolean }>(
      'SELECT view_name AS view, dirty FROM mvrefresh.status WHERE view_name = ANY ($1)',
      [views],
    );
    for (const r of rows) if (!r.dirty && !done.has(r.view)) done.set(r.view, performance.now() - t0);
    if (done.size < views.length) await new Promise((res) => setTimeout(res, CLEAN_POLL_MS));
  }
  return done;
}

export interface Difference {
  /** Rows of the view not in its query (EXCEPT ALL). */
  extra: number;
  /** Rows of the query not in the view. */
  missing: number;
}

/**
 * The view against its query, EXCEPT ALL both ways. A materialized view is compared with its stored
 * definition (pg_get_viewdef); anything else under the name (an incremental view's table) with the SQL
 * text the bench created the view with.
 */
export async function difference(c: pg.ClientBase, view: ViewSpec): Promise<Difference> {
  const name = `public.${pg.escapeIdentifier(view.name)}`;
  const { rows: kind } = await c.query<{ def: string | null }>(
    `SELECT CASE WHEN c.relkind = 'm' THEN pg_get_viewdef(c.oid) END AS def
       FROM pg_class c WHERE c.oid = $1::regclass`,
    [name],
  );
  const query = (kind[0]?.def ?? view.query).trim().replace(/;$/, '');
  const { rows } = await c.query<{ extra: string; missing: string }>(
    `SELECT (SELECT count(*) FROM ((TABLE ${name}) EXCEPT ALL (${query})) a) AS extra,
            (SELECT count(*) FROM ((${query}) EXCEPT ALL (TABLE ${name})) b) AS missing`,
  );
  return { extra: Number(rows[0]?.extra ?? Number.NaN), missing: Number(rows[0]?.missing ?? Number.NaN) };
}

/** Drops `view` whatever stands under its name now (materialized view, or an incremental view's table). */
export async function dropView(c: pg.ClientBase, view: ViewSpec): Promise<void> {
  const { rows } = await c.query<{ kind: string }>(
    `SELECT c.relkind AS kind FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [`public.${pg.escapeIdentifier(view.name)}`],
  );
  const kind = rows[0]?.kind;
  if (kind === undefined) return;
  const what = kind === 'm' ? 'MATERIALIZED VIEW' : kind === 'v' ? 'VIEW' : 'TABLE';
  await c.query(`DROP ${what} public.${pg.escapeIdentifier(view.name)}`);
}
