import type pg from 'pg';
import { sql } from '../db/sql.js';
import { latestVersion } from '../db/migrate.js';
import { replaceFindings } from '../replace/doctor.js';
import { describeBloat, isBloated, vacuumHealth } from '../db/vacuum.js';

/**
 * `mvrefresh doctor`: a review of a database's setup for mvrefresh, one line per finding. `problem`: the
 * daemon cannot do its job (or will not for long); `warn`: it works, worse than it could; `ok`: checked.
 */
export type Level = 'ok' | 'warn' | 'problem';

export interface Finding {
  level: Level;
  check: string;
  message: string;
}

/** Server versions supported (server_version_num): 14 to 18. */
const MIN_VERSION = 140_000;
const MAX_VERSION_EXCLUSIVE = 190_000;
/** MAINTAIN (REFRESH without owning the view) exists from 17 on. */
const PG17 = 170_000;
/** Connections one replica opens at its defaults: LISTEN, 2 refresh, 3 control, 2 HTTP. */
const DAEMON_CONNECTIONS = 8;
/** A transaction older than this keeps vacuum from removing anything that died since it began. */
const OLD_TRANSACTION_S = 3600;
/** autovacuum_naptime above this leaves the catalogs churned by refreshes too long between runs. */
const MAX_NAPTIME_S = 60;

export interface DoctorOptions {
  /** The role the daemon runs as (privileges are checked for it); default: the connected role. */
  role?: string | undefined;
}

interface ServerRow {
  version_num: number;
  version: string;
  in_recovery: boolean;
  max_connections: number;
  connections: number;
  current_role: string;
}

const ok = (check: string, message: string): Finding => ({ level: 'ok', check, message });
const warn = (check: string, message: string): Finding => ({ level: 'warn', check, message });
const problem = (check: string, message: string): Finding => ({ level: 'problem', check, message });

function serverFindings(s: ServerRow): Finding[] {
  const major = Math.floor(s.version_num / 10_000);
  const out: Finding[] = [
    s.version_num >= MIN_VERSION && s.version_num < MAX_VERSION_EXCLUSIVE
      ? ok('server', `PostgreSQL ${s.version} (supported: 14 to 18)`)
      : problem('server', `PostgreSQL ${major} is not supported: mvrefresh supports 14 to 18`),
  ];
  if (s.in_recovery)
    out.push(problem('server', 'this server is a standby: LISTEN and REFRESH need the primary'));
  const free = s.max_connections - s.connections;
  out.push(
    free < DAEMON_CONNECTIONS
      ? warn(
          'connections',
          `${free} of max_connections ${s.max_connections} free: each daemon replica needs ${DAEMON_CONNECTIONS} at its defaults`,
        )
      : ok('connections', `${free} of max_connections ${s.max_connections} free`),
  );
  return out;
}

async function schemaFindings(db: pg.ClientBase): Promise<{ installed: boolean; findings: Finding[] }> {
  const { rows } = await db.query<{ installed: boolean }>(sql.schemaInstalled);
  if (!rows[0]?.installed)
    return {
      installed: false,
      findings: [problem('schema', 'the mvrefresh schema is not installed: run mvrefresh migrate')],
    };
  const version = (await db.query<{ version: number }>(sql.schemaVersion)).rows[0]?.version ?? 0;
  const known = await latestVersion();
  const finding =
    version < known
      ? problem('schema', `schema version ${version}, this build needs ${known}: run mvrefresh migrate`)
      : version > known
        ? warn(
            'schema',
            `schema version ${version} is newer than this build knows (${known}): upgrade mvrefresh`,
          )
        : ok('schema', `schema version ${version}`);
  return { installed: true, findings: [finding] };
}

async function vacuumFindings(db: pg.ClientBase): Promise<Finding[]> {
  const h = await vacuumHealth(db);
  const out: Finding[] = [];
  if (!h.autovacuum)
    out.push(
      problem(
        'autovacuum',
        'autovacuum is off: every REFRESH ... CONCURRENTLY leaves dead rows in pg_attribute, pg_class, pg_depend, pg_statistic and pg_type that nothing removes (docs/operations.md, "Vacuum and the catalogs")',
      ),
    );
  else if (!h.trackCounts)
    out.push(problem('autovacuum', 'track_counts is off: autovacuum cannot tell which tables need it'));
  else
    out.push(
      h.naptimeS > MAX_NAPTIME_S
        ? warn(
            'autovacuum',
            `autovacuum_naptime is ${h.naptimeS} s: the churned catalogs grow for that long between runs`,
          )
        : ok('autovacuum', 'autovacuum is on'),
    );
  for (const t of h.tables) {
    if (!t.autovacuum_enabled)
      out.push(problem('autovacuum', `${t.table} has autovacuum_enabled = false: its dead rows stay`));
    if (isBloated(t)) out.push(problem('bloat', `${describeBloat(t)}: vacuum is not keeping up`));
  }
  if (!out.some((f) => f.check === 'bloat'))
    out.push(ok('bloat', `no bloat in ${h.tables.map((t) => t.table).join(', ')}`));
  return out;
}

async function horizonFindings(db: pg.ClientBase): Promise<Finding[]> {
  const { rows } = await db.query<{ kind: string; what: string; age_s: number | null }>(sql.doctorHorizon);
  const out = rows
    .filter((r) => r.age_s === null || r.age_s > OLD_TRANSACTION_S)
    .map((r) =>
      warn(
        'vacuum horizon',
        r.age_s === null
          ? `${r.kind} ${r.what} holds back the removal of dead rows (catalogs included) until it is used or dropped`
          : `${r.kind} ${r.what} is ${(r.age_s / 3600).toFixed(1)} h old: vacuum cannot remove rows that died since it began`,
      ),
    );
  return out.length > 0 ? out : [ok('vacuum horizon', 'no old transaction or slot holds vacuum back')];
}

interface ViewRow {
  view: string;
  kind: string | null;
  populated: boolean | null;
  blocking_allowed: boolean;
  paused: boolean;
  failures: number;
  last_error: string | null;
  last_sqlstate: string | null;
  unique_index: boolean;
  can_refresh: boolean;
  /** An incremental view (src/incremental/): a table under the name. */
  incremental: boolean;
}

function viewFindings(rows: ViewRow[], role: string): Finding[] {
  const out: Finding[] = [];
  for (const v of rows) {
    if (v.kind === null) {
      out.push(problem('views', `${v.view} does not exist: mvrefresh unwatch ${v.view}, or create it again`));
      continue;
    }
    if (v.kind !== 'm' && !(v.kind === 'r' && v.incremental)) {
      out.push(problem('views', `${v.view} is no longer a materialized view`));
      continue;
    }
    if (!v.unique_index && !v.blocking_allowed)
      out.push(
        problem(
          'views',
          `${v.view} has no unique index on plain columns: REFRESH ... CONCURRENTLY fails (55000); create one, or watch it with --allow-blocking-refresh`,
        ),
      );
    else if (!v.unique_index)
      out.push(warn('views', `${v.view} has no unique index: its plain refreshes block its readers`));
    if (!v.can_refresh)
      out.push(
        problem(
          'privileges',
          v.incremental
            ? `${role} cannot apply changes to the incremental view ${v.view}: it must own it or be a member of its owner`
            : `${role} cannot refresh ${v.view}: it must own it (or, from 17, have MAINTAIN)`,
        ),
      );
    if (v.populated === false)
      out.push(warn('views', `${v.view} is not populated: the daemon populates it once`));
    if (v.paused) out.push(warn('views', `${v.view} is paused: nobody refreshes it until mvrefresh resume`));
    if (v.failures > 0)
      out.push(
        warn(
          'views',
          `${v.view} failed its last ${v.failures} refresh(es): ${v.last_sqlstate ?? ''} ${v.last_error ?? ''}`.trim(),
        ),
      );
  }
  if (!out.some((f) => f.check === 'views'))
    out.push(
      ok(
        'views',
        rows.length === 0
          ? 'no view is watched yet'
          : `${rows.length} watched view(s), each with a unique index`,
      ),
    );
  return out;
}

interface TriggerRow {
  table: string;
  enabled: string | null;
  foreign: boolean;
  function: string | null;
  owner: string;
}

function triggerFinding(r: TriggerRow): Finding {
  if (r.foreign)
    return problem(
      'triggers',
      `${r.table}: its trigger named mvrefresh_mark runs ${r.function ?? '?'}, not mvrefresh.mark_table(): writes to it mark nothing, so its views are refreshed at every drift check only; its owner (${r.owner}) must rename or drop that trigger`,
    );
  if (r.enabled === 'R')
    return problem(
      'triggers',
      `${r.table}: trigger mvrefresh_mark is ENABLE REPLICA (fires only under session_replication_role = replica): ordinary writes mark nothing, so its views are refreshed at every drift check only; its owner (${r.owner}) must run ALTER TABLE ${r.table} ENABLE ALWAYS TRIGGER mvrefresh_mark`,
    );
  return warn(
    'triggers',
    `${r.table}: trigger mvrefresh_mark ${r.enabled === null ? 'missing' : 'disabled'}: writes to it are found by the drift check only (the daemon repairs it where it owns the table)`,
  );
}

async function driftFindings(db: pg.ClientBase): Promise<Finding[]> {
  // an older schema (the schema check says to migrate) has no record of the checks
  if (!(await db.query<{ present: boolean }>(sql.doctorDriftPresent)).rows[0]?.present) return [];
  const state = (
    await db.query<{
      last_ok_at: Date | null;
      last_failed_at: Date | null;
      last_error: string | null;
      failing: boolean;
    }>(sql.doctorDriftState)
  ).rows[0];
  const out: Finding[] = [];
  if (state?.failing)
    out.push(
      problem(
        'drift check',
        `the last drift check failed (${state.last_failed_at?.toISOString() ?? '?'}: ${state.last_error ?? ''}): writes that fire no trigger and changes of the sources go unseen until it works again`,
      ),
    );
  const events = await db.query<{ kind: string; detail: string; last_seen: Date }>(sql.doctorDriftFindings);
  for (const e of events.rows)
    out.push(warn('drift check', `${e.detail} (${e.kind}, last found ${e.last_seen.toISOString()})`));
  if (out.length === 0)
    out.push(
      ok(
        'drift check',
        state?.last_ok_at
          ? `last succeeded ${state.last_ok_at.toISOString()}; no write found bypassing a trigger in the last day`
          : 'no drift check has run yet (the daemon runs one at start)',
      ),
    );
  return out;
}

async function triggerFindings(db: pg.ClientBase): Promise<Finding[]> {
  const routines = (await db.query<{ logged: boolean; marks: boolean }>(sql.doctorMarkRule)).rows[0];
  const rule = routines?.logged ? 'logged' : routines?.marks ? 'marks' : 'count';
  const { rows } = await db.query<TriggerRow>(sql.doctorTriggers(rule));
  const out = rows.map(triggerFinding);
  const capture = await db.query<{ table: string; trigger: string; enabled: string; owner: string }>(
    sql.doctorCaptureTriggers,
  );
  for (const r of capture.rows)
    out.push(
      warn(
        'triggers',
        `${r.table}: capture trigger ${r.trigger} ${r.enabled === 'R' ? 'is ENABLE REPLICA (fires only under session_replication_role = replica)' : 'disabled'}: the writes it misses are logged for no incremental view; the drift check finds them and recomputes the views reading ${r.table} in full, and enables the trigger again where the daemon owns the table (else its owner, ${r.owner}, must run ALTER TABLE ${r.table} ENABLE ALWAYS TRIGGER ${r.trigger})`,
      ),
    );
  const events = (await db.query<{ enabled: number }>(sql.doctorEventTriggers)).rows[0]?.enabled ?? 0;
  out.push(
    events === 2
      ? ok('event triggers', 'installed: DDL under watched views is found at once')
      : warn(
          'event triggers',
          'not installed (as a superuser: mvrefresh install-ddl-watch): DDL under watched views is found by the periodic drift check only',
        ),
  );
  return out;
}

async function privilegeFindings(db: pg.ClientBase, role: string): Promise<Finding[]> {
  const { rows } = await db.query<{
    schema_usage: boolean;
    tables_missing: string[];
    routines_missing: string[];
  }>(sql.doctorPrivileges, [role]);
  const r = rows[0];
  const out: Finding[] = [];
  if (!r?.schema_usage) out.push(problem('privileges', `${role} has no USAGE on schema mvrefresh`));
  if (r && r.tables_missing.length > 0)
    out.push(
      problem(
        'privileges',
        `${role} lacks SELECT, INSERT, UPDATE or DELETE on ${r.tables_missing.join(', ')} (mvrefresh grants prints what it needs)`,
      ),
    );
  if (r && r.routines_missing.length > 0)
    out.push(problem('privileges', `${role} cannot execute ${r.routines_missing.join(', ')}`));
  return out.length > 0 ? out : [ok('privileges', `${role} has what the daemon needs on schema mvrefresh`)];
}

export async function doctor(db: pg.ClientBase, opts: DoctorOptions = {}): Promise<Finding[]> {
  const server = (await db.query<ServerRow>(sql.doctorServer)).rows[0]!;
  const role = opts.role ?? server.current_role;
  const findings = [...serverFindings(server)];
  const schema = await schemaFindings(db);
  findings.push(...schema.findings);
  findings.push(...(await vacuumFindings(db)), ...(await horizonFindings(db)));
  if (schema.installed) {
    const views = await db.query<ViewRow>(sql.doctorViews, [role, server.version_num >= PG17]);
    findings.push(
      ...viewFindings(views.rows, role),
      ...(await triggerFindings(db)),
      ...(await driftFindings(db)),
      ...(await privilegeFindings(db, role)),
      ...(await replaceFindings(db)),
    );
  }
  return findings;
}

const LABEL: Record<Level, string> = { ok: 'ok     ', warn: 'warn   ', problem: 'PROBLEM' };

export function formatFindings(findings: Finding[]): string {
  const problems = findings.filter((f) => f.level === 'problem').length;
  const warnings = findings.filter((f) => f.level === 'warn').length;
  return [
    ...findings.map((f) => `${LABEL[f.level]} ${f.check}: ${f.message}`),
    problems > 0
      ? `${problems} problem(s), ${warnings} warning(s)`
      : warnings > 0
        ? `no problem, ${warnings} warning(s)`
        : 'no problem found',
  ].join('\n');
}
