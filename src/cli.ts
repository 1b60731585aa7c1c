import { parseArgs, type ParseArgsConfig } from 'node:util';
import type pg from 'pg';
import { SAFE_SEARCH_PATH, callerSearchPath, connectClient, prepareAdminSession } from './db/connect.js';
import { sql } from './db/sql.js';
import { installDdlWatch } from './db/ddl-watch.js';
import {
  isIncremental,
  unwatchAllIncremental,
  unwatchIncremental,
  verify,
  watchCommand,
} from './incremental/commands.js';
import { IncrementalRefused } from './incremental/convert.js';
import { describeError } from './db/errors.js';
import { connectionStringProblem, isPostgresUrl, redactUrl, scrubSecret } from './db/url.js';
import { isRegularFile } from './config.js';
import { formatStatus, printable, runMigrate, setPaused, unwatchView, viewStatus } from './commands/admin.js';
import { watchLines } from './commands/watch-output.js';
import { PACKAGE_VERSION } from './version.js';
import { doctor, formatFindings } from './commands/doctor.js';
import { grantsSql, resolveTargets } from './commands/grants.js';
import { sweepInterval, viewDefaults } from './config.js';
import { listenDelivers } from './db/listen-probe.js';
import { formatDelivery } from './commands/delivery.js';
import { MIN_REFRESH_BUDGET, parseDuration, parseShare } from './duration.js';

/**
 * Exit codes: 0 done, 1 the operation failed, 2 the command line is wrong. `run` adds its own (RunExit):
 * 2 for a bad configuration value, 130 when a second signal ended it at once.
 */
export const ExitCode = { ok: 0, failed: 1, usage: 2 } as const;

const USAGE = `Usage: mvrefresh <command> [options]

Commands:
  migrate                       install or upgrade the mvrefresh schema
  install-ddl-watch             as a superuser (or a managed service's event-trigger role): install the
                                DDL event triggers, which report changes of watched views' sources at once
  watch <view> [options]        watch a materialized view (installs its triggers)
      --max-staleness D         staleness target: 10s, 500ms, 2m or ms (default: the daemon's)
      --refresh-budget S        share of time its refreshes may take: 0.2 or 20% (default: the daemon's)
      --refresh-interval-ms N   also refresh every N ms (sources without triggers)
      --allow-blocking-refresh  accept a view without a unique index (plain REFRESH blocks readers)
      --with-dependencies       also watch the materialized views it reads
      --incremental             keep it incrementally: a table under its name, changed by applying only
                                what its sources' writes changed (refused, naming the clause, when its
                                definition needs a full refresh; docs/operations.md)
  unwatch <view> | --all        remove the triggers and the registration (an incremental view becomes a
                                materialized view again first)
  verify <view> [--no-repair]   compare an incremental view with its definition; repair a difference
  pause <view>                  stop refreshing a view (bulk loads); it keeps its marks
  resume <view>                 refresh it again (once at once if it was written meanwhile)
  status [--json]               watched views, their state, staleness and last error
  doctor [--role NAME] [--json] review the database's setup for mvrefresh (autovacuum, catalog bloat,
                                unique indexes, privileges of --role, event triggers, server version);
                                exit code 1 when it finds a problem
  grants --role NAME --ddl-role NAME [--owner-role OWNER] [--view V ...]
                                print least-privilege SQL: --role runs \`run\`, --ddl-role runs migrate,
                                watch and unwatch; --view (needs the database) grants TRIGGER on exactly
                                the tables V reads
  replace <view> (--definition-file FILE | --query SQL) [--lock-timeout D] [--timeout D]
                                give a materialized view a new definition without blocking its readers:
                                build it beside the live one, then swap them in a short transaction
                                (indexes, grants, comments, dependants and settings kept; --lock-timeout:
                                longest wait of one swap attempt, default 500ms; --timeout: how long the
                                swap is retried, default 10m)
  run                           run the refresh daemon (configuration: environment, MVREFRESH_CONFIG)

Options:
  --database-url URL            default: DATABASE_URL
  --json                        machine-readable output (watch, unwatch, status, doctor, replace)
  -h, --help, -v, --version

Exit codes:
  0 done, 1 the operation failed, 2 the command line (or, for run, the configuration) is wrong,
  130 run was stopped at once by a second SIGTERM / SIGINT`;

class UsageError extends Error {
  override name = 'UsageError';
}

const OPTIONS = {
  'database-url': { type: 'string' },
  'max-staleness': { type: 'string' },
  'refresh-budget': { type: 'string' },
  // retired: refused with a message that names the replacement
  'debounce-ms': { type: 'string' },
  'max-wait-ms': { type: 'string' },
  'refresh-interval-ms': { type: 'string' },
  'allow-blocking-refresh': { type: 'boolean' },
  'with-dependencies': { type: 'boolean' },
  incremental: { type: 'boolean' },
  'no-repair': { type: 'boolean' },
  all: { type: 'boolean' },
  role: { type: 'string' },
  'owner-role': { type: 'string' },
  'ddl-role': { type: 'string' },
  view: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  'definition-file': { type: 'string' },
  query: { type: 'string' },
  'lock-timeout': { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function parseMs(values: Values, key: 'refresh-interval-ms', min: number): number | undefined {
  const raw = values[key];
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > 86_400_000)
    throw new UsageError(
      `--${key} must be a whole number of milliseconds from ${min} to 86400000, got "${raw}"`,
    );
  return Number(raw);
}

function parseTarget(values: Values): number | undefined {
  const raw = values['max-staleness'];
  if (raw === undefined) return undefined;
  const ms = parseDuration(raw);
  if (ms === undefined || ms < 1 || ms > 86_400_000)
    throw new UsageError(`--max-staleness must be a duration such as 10s, 500ms, 2m or 1500, got "${raw}"`);
  return ms;
}

function parseBudget(values: Values): number | undefined {
  const raw = values['refresh-budget'];
  if (raw === undefined) return undefined;
  const share = parseShare(raw);
  if (share === undefined || share < MIN_REFRESH_BUDGET)
    throw new UsageError(
      `--refresh-budget must be a share from ${MIN_REFRESH_BUDGET} (${MIN_REFRESH_BUDGET * 100}%) to 1 (0.2 or 20%), got "${raw}"`,
    );
  return share;
}

async function replaceDefinition(values: Values): Promise<string> {
  const file = values['definition-file'];
  const query = values.query;
  if ((file === undefined) === (query === undefined))
    throw new UsageError('replace needs exactly one of --definition-file FILE and --query SQL');
  let text = query;
  if (file !== undefined) {
    const { readFile } = await import('node:fs/promises');
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read --definition-file ${file}: ${(err as Error).message}`);
    }
  }
  if (!text || text.trim() === '') throw new UsageError('the new definition is empty');
  return text;
}

function parseReplaceDuration(values: Values, key: 'lock-timeout' | 'timeout'): number | undefined {
  const raw = values[key];
  if (raw === undefined) return undefined;
  const ms = parseDuration(raw);
  if (ms === undefined || ms < 1 || ms > 86_400_000)
    throw new UsageError(`--${key} must be a duration such as 500ms, 10s or 5m, got "${raw}"`);
  return ms;
}

function databaseUrl(values: Values, env: NodeJS.ProcessEnv): string {
  const url = values['database-url'] ?? env['DATABASE_URL'];
  if (!url) throw new UsageError('no database: set DATABASE_URL or pass --database-url');
  if (!isPostgresUrl(url))
    throw new UsageError(`the database URL must be postgres://..., got ${redactUrl(url)}`);
  const problem = connectionStringProblem(url, isRegularFile);
  if (problem) throw new UsageError(`the database URL's ${problem}`);
  return url;
}

/** Whether LISTEN through listenUrl receives this session's NOTIFY, or why that could not be checked. */
async function listenDelivery(listenUrl: string, notifier: pg.Client): Promise<boolean | string> {
  try {
    return await listenDelivers(listenUrl, notifier);
  } catch (err) {
    return scrubSecret(describeError(err), listenUrl);
  }
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connectClient(url);
  try {
    await prepareAdminSession(client);
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Runs fn with the session's own search_path back in force, for statements that look up names the user
 * typed (grants --view) and call only schema-qualified functions; SAFE_SEARCH_PATH again afterwards.
 */
async function inCallerSearchPath<T>(client: pg.Client, fn: () => Promise<T>): Promise<T> {
  const path = callerSearchPath(client);
  if (path === null) return fn();
  await client.query(sql.pinSearchPath, [path, false]);
  try {
    return await fn();
  } finally {
    await client.query(sql.pinSearchPath, [SAFE_SEARCH_PATH, false]);
  }
}

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

const defaultIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
};

/**
 * Node opens its inspector on 127.0.0.1:9229 at SIGUSR1 unless the process listens for the signal, and the
 * inspector runs any code in the process (which holds DATABASE_URL and the admin token) for whoever can
 * reach that port. Installed once per process, before any command runs.
 */
let inspectorSignalIgnored = false;
function ignoreInspectorSignal(): void {
  if (inspectorSignalIgnored) return;
  inspectorSignalIgnored = true;
  process.on('SIGUSR1', () => undefined);
}

export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  ignoreInspectorSignal();
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    io.err(`mvrefresh: ${(err as Error).message}\nRun 'mvrefresh --help' for usage.`);
    return ExitCode.usage;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.version) {
    io.out(PACKAGE_VERSION);
    return ExitCode.ok;
  }
  if (values.help || command === undefined || command === 'help') {
    (command === undefined && !values.help ? io.err : io.out)(USAGE);
    return command === undefined && !values.help ? ExitCode.usage : ExitCode.ok;
  }
  let url: string | undefined;
  try {
    const expectArgs = (n: number) => {
      if (rest.length !== n)
        throw new UsageError(
          n === 0
            ? `${command} takes no arguments, got "${rest.join(' ')}"`
            : `${command} takes exactly ${n} argument(s)`,
        );
    };
    switch (command) {
      case 'migrate': {
        expectArgs(0);
        url = databaseUrl(values, io.env);
        const result = await withClient(url, runMigrate);
        const changes = [
          ...(result.applied.length > 0
            ? [`applied ${result.applied.map((m) => `${m.version}_${m.name}`).join(', ')}`]
            : []),
          ...(result.routines.length > 0 ? [`routines ${result.routines.join(', ')}`] : []),
        ];
        io.out(
          changes.length === 0
            ? `mvrefresh schema is up to date (version ${result.version})`
            : `${changes.join('; ')}; schema at version ${result.version}`,
        );
        return ExitCode.ok;
      }
      case 'install-ddl-watch': {
        expectArgs(0);
        url = databaseUrl(values, io.env);
        await withClient(url, (c) => installDdlWatch(c));
        io.out(
          'event triggers mvrefresh_ddl and mvrefresh_drop installed: they execute mvrefresh_ddl_watch.ddl_changed(), owned by this role; ' +
            'mvrefresh_refresh (mvrefresh_ddl_watch.refresh_guard()) names mvrefresh when a REFRESH targets an incremental view',
        );
        return ExitCode.ok;
      }
      case 'watch': {
        if (rest.length !== 1) throw new UsageError('watch takes exactly one materialized view name');
        for (const retired of ['debounce-ms', 'max-wait-ms'] as const)
          if (values[retired] !== undefined)
            throw new UsageError(
              `--${retired} is retired (the daemon cannot observe quiet time): use --max-staleness, and --refresh-budget to bound the cost`,
            );
        const opts = {
          maxStalenessMs: parseTarget(values),
          refreshBudget: parseBudget(values),
          refreshIntervalMs: parseMs(values, 'refresh-interval-ms', 1),
          allowBlockingRefresh: values['allow-blocking-refresh'] ?? false,
          withDependencies: values['with-dependencies'] ?? false,
        };
        url = databaseUrl(values, io.env);
        if (values.incremental && opts.withDependencies)
          throw new UsageError('--incremental cannot be combined with --with-dependencies');
        const outcome = await withClient(url, (c) =>
          watchCommand(c, rest[0]!, opts, values.incremental ?? false),
        );
        if (values.json) io.out(JSON.stringify(outcome.report));
        else
          for (const line of watchLines(outcome))
            if (line.err) io.err(printable(line.text));
            else io.out(printable(line.text));
        return ExitCode.ok;
      }
      case 'unwatch': {
        if (values.all) expectArgs(0);
        else if (rest.length !== 1)
          throw new UsageError('unwatch takes one materialized view name, or --all');
        url = databaseUrl(values, io.env);
        const reports = await withClient(url, async (c) =>
          values.all
            ? unwatchAllIncremental(c)
            : [
                (await isIncremental(c, rest[0]!))
                  ? await unwatchIncremental(c, rest[0]!)
                  : await unwatchView(c, rest[0]!),
              ],
        );
        if (values.json) io.out(JSON.stringify(values.all ? reports : reports[0]));
        else if (reports.length === 0) io.out('no view was watched');
        else
          for (const r of reports)
            io.out(
              printable(`unwatched ${r.view}; triggers removed from: ${r.tables.join(', ') || '(none)'}`),
            );
        return ExitCode.ok;
      }
      case 'verify': {
        if (rest.length !== 1) throw new UsageError('verify takes exactly one incremental view name');
        url = databaseUrl(values, io.env);
        const report = await withClient(url, (c) => verify(c, rest[0]!, !values['no-repair']));
        if (values.json) io.out(JSON.stringify(report));
        else
          io.out(
            printable(
              `${report.view}: ${report.extra} extra, ${report.missing} missing row(s)` +
                (report.repaired
                  ? '; repaired'
                  : report.extra + report.missing > 0
                    ? '; not repaired (--no-repair)'
                    : '; equal to its definition'),
            ),
          );
        return report.extra + report.missing > 0 && !report.repaired ? ExitCode.failed : ExitCode.ok;
      }
      case 'pause':
      case 'resume': {
        if (rest.length !== 1) throw new UsageError(`${command} takes exactly one materialized view name`);
        url = databaseUrl(values, io.env);
        const report = await withClient(url, (c) => setPaused(c, rest[0]!, command === 'pause'));
        if (values.json) io.out(JSON.stringify(report));
        else
          io.out(
            command === 'pause'
              ? `${report.changed ? 'paused' : 'already paused:'} ${report.view}`
              : `${report.changed ? 'resumed' : 'not paused:'} ${report.view}${report.changed && report.dirty ? ' (a refresh follows)' : ''}`,
          );
        return ExitCode.ok;
      }
      case 'status': {
        expectArgs(0);
        url = databaseUrl(values, io.env);
        const listenUrl = io.env['MVREFRESH_LISTEN_URL'] || url;
        const { rows, delivery } = await withClient(url, async (c) => ({
          rows: await viewStatus(c),
          delivery: values.json ? undefined : await listenDelivery(listenUrl, c),
        }));
        if (values.json) io.out(JSON.stringify(rows));
        else {
          io.out(formatStatus(rows, viewDefaults(io.env)));
          io.out(
            printable(
              formatDelivery(delivery, {
                listenUrl,
                separateListenUrl: listenUrl !== url,
                sweepIntervalMs: sweepInterval(io.env),
              }),
            ),
          );
        }
        return ExitCode.ok;
      }
      case 'doctor': {
        expectArgs(0);
        url = databaseUrl(values, io.env);
        const findings = await withClient(url, (c) => doctor(c, { role: values.role }));
        if (values.json) io.out(JSON.stringify(findings));
        else for (const line of formatFindings(findings).split('\n')) io.out(printable(line));
        return findings.some((f) => f.level === 'problem') ? ExitCode.failed : ExitCode.ok;
      }
      case 'grants': {
        expectArgs(0);
        if (!values.role || !values['ddl-role'])
          throw new UsageError('grants needs --role NAME (runtime) and --ddl-role NAME (migrate, watch)');
        if (values.role === values['ddl-role'])
          throw new UsageError('--role and --ddl-role must differ: the daemon needs no DDL privileges');
        const views = values.view ?? [];
        let targets;
        if (views.length > 0) {
          url = databaseUrl(values, io.env);
          targets = await withClient(url, (c) => inCallerSearchPath(c, () => resolveTargets(c, views)));
        }
        io.out(
          grantsSql({
            role: values.role,
            ddlRole: values['ddl-role'],
            ownerRole: values['owner-role'],
            targets,
          }),
        );
        return ExitCode.ok;
      }
      case 'replace': {
        if (rest.length !== 1) throw new UsageError('replace takes exactly one materialized view name');
        const definition = await replaceDefinition(values);
        const lockTimeoutMs = parseReplaceDuration(values, 'lock-timeout');
        const swapTimeoutMs = parseReplaceDuration(values, 'timeout');
        url = databaseUrl(values, io.env);
        const { replaceFromCli } = await import('./replace/cli.js');
        const outcome = await replaceFromCli(url, {
          view: rest[0]!,
          definition,
          lockTimeoutMs,
          swapTimeoutMs,
          env: io.env,
          progress: (line) => io.err(printable(line)),
        });
        if (values.json) io.out(JSON.stringify(outcome));
        else if (outcome.status === 'done')
          io.out(
            printable(
              `replaced ${rest[0]!} (request ${outcome.id}, ${Math.round(outcome.durationMs)} ms; swap ` +
                `${outcome.swapMs} ms, ${outcome.swapAttempts} attempt(s))` +
                (outcome.dependants.length
                  ? `; dependants re-created: ${outcome.dependants.join(', ')}`
                  : ''),
            ),
          );
        else
          io.err(printable(`mvrefresh replace: ${outcome.status === 'failed' ? outcome.error : 'stopped'}`));
        return outcome.status === 'done' ? ExitCode.ok : ExitCode.failed;
      }
      case 'run': {
        expectArgs(0);
        const { runDaemon } = await import('./daemon/run.js');
        return await runDaemon({ env: io.env, databaseUrl: values['database-url'] });
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`mvrefresh: ${err.message}\nRun 'mvrefresh --help' for usage.`);
      return ExitCode.usage;
    }
    if (err instanceof IncrementalRefused) {
      io.err(`mvrefresh ${command}: ${printable(err.message)}`);
      return ExitCode.failed;
    }
    io.err(`mvrefresh ${command}: ${printable(scrubSecret(describeError(err), url))}`);
    return ExitCode.failed;
  }
}
