/**
 * The CLI's entry points for incremental views: `watch --incremental`, `unwatch` of an incremental view,
 * `verify`. A name is resolved as the user's session resolves it (search_path, quoting).
 */
import type pg from 'pg';
import { callerSearchPath } from '../db/connect.js';
import { SqlState, isPgError } from '../db/errors.js';
import {
  setIncrementalSettings,
  unwatchAll,
  unwatchView,
  watchView,
  type SettingsReport,
  type WatchOptions,
  type WatchReport,
} from '../commands/admin.js';
import { settleClears } from '../db/clears.js';
import { makeIncremental, makeMaterialized, IncrementalRefused, type ConvertReport } from './convert.js';
import { verifyView, type VerifyReport } from './verify.js';

async function resolve(
  client: pg.ClientBase,
  name: string,
): Promise<{ schema: string; name: string } | undefined> {
  const { rows } = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = (mvrefresh.lookup_name($1, COALESCE($2, pg_catalog.current_setting('search_path')))).rel`,
    [name, callerSearchPath(client)],
  );
  return rows[0];
}

async function resolveOrRefuse(client: pg.ClientBase, name: string) {
  const r = await resolve(client, name);
  if (!r)
    throw new IncrementalRefused(
      `no such relation: ${JSON.stringify(name)} (quote names with capitals or spaces: '"My View"')`,
    );
  return r;
}

/**
 * Is `name` an incremental view (registered)? A malformed name is not: the command it was given to
 * reports it (resolve_view() explains how to quote it).
 */
export async function isIncremental(client: pg.ClientBase, name: string): Promise<boolean> {
  const r = await resolve(client, name).catch((err: unknown) => {
    if (isPgError(err) && (err.code === SqlState.invalidName || err.code === SqlState.invalidParameterValue))
      return undefined;
    throw err;
  });
  if (!r) return false;
  const { rows } = await client.query(
    `SELECT FROM mvrefresh.incremental i JOIN mvrefresh.view_state v ON v.id = i.view_id
      WHERE v.view_schema = $1 AND v.view_name = $2`,
    [r.schema, r.name],
  );
  return rows.length > 0;
}

/** Watches the view (as `watch` does), then makes it incremental; a refusal leaves it watched in full mode. */
export async function watchIncremental(
  client: pg.ClientBase,
  name: string,
  opts: WatchOptions,
): Promise<ConvertReport> {
  if (await isIncremental(client, name)) throw new IncrementalRefused(`${name} is already incremental`);
  return convert(client, name, opts);
}

/** watchIncremental() of a view known not to be incremental yet. */
async function convert(client: pg.ClientBase, name: string, opts: WatchOptions): Promise<ConvertReport> {
  const r = await resolveOrRefuse(client, name);
  await watchView(client, name, opts);
  const report = await makeIncremental(client, r.schema, r.name);
  await settleClears(client);
  return report;
}

export type WatchOutcome =
  | { kind: 'settings'; report: SettingsReport }
  | { kind: 'incremental'; report: ConvertReport }
  | { kind: 'watched'; report: WatchReport };

/**
 * `watch`: a view that is already incremental gets the settings given (with or without --incremental: it
 * stays incremental, and `unwatch` turns it back); any other is watched, then made incremental when asked.
 */
export async function watchCommand(
  client: pg.ClientBase,
  name: string,
  opts: WatchOptions,
  incremental: boolean,
): Promise<WatchOutcome> {
  if (await isIncremental(client, name)) {
    if (opts.withDependencies)
      throw new IncrementalRefused(
        `${name} is an incremental view: --with-dependencies does not apply (watch the views it reads by name)`,
      );
    return { kind: 'settings', report: await setIncrementalSettings(client, name, opts) };
  }
  if (incremental) return { kind: 'incremental', report: await convert(client, name, opts) };
  return { kind: 'watched', report: await watchView(client, name, opts) };
}

/** Turns an incremental view back into a materialized view, then unwatches it. */
export async function unwatchIncremental(client: pg.ClientBase, name: string) {
  const r = await resolveOrRefuse(client, name);
  await makeMaterialized(client, r.schema, r.name);
  return unwatchView(client, name);
}

export async function verify(client: pg.ClientBase, name: string, repair: boolean): Promise<VerifyReport> {
  const r = await resolveOrRefuse(client, name);
  return verifyView(client, r.schema, r.name, repair);
}

/** `unwatch --all`: incremental views become materialized views again first. */
export async function unwatchAllIncremental(client: pg.ClientBase) {
  const { rows } = await client.query<{ schema: string; name: string }>(
    `SELECT v.view_schema AS schema, v.view_name AS name FROM mvrefresh.incremental i
       JOIN mvrefresh.view_state v ON v.id = i.view_id ORDER BY v.depth DESC, v.id`,
  );
  for (const r of rows) await makeMaterialized(client, r.schema, r.name);
  return unwatchAll(client);
}
