import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { AppName, createPool, sessionSettings, type PoolOptions } from '../db/connect.js';
import { describeError } from '../db/errors.js';
import { sql } from '../db/sql.js';
import { redactUrl, scrubSecret } from '../db/url.js';
import { HttpServer } from './http/server.js';
import { Listener } from './refresh/listener.js';
import { Metrics } from './metrics.js';
import { Refresher } from './refresh/refresher.js';
import { Releasers } from './lib/releasers.js';
import { Scheduler } from './refresh/scheduler.js';
import { Sweeper } from './refresh/sweeper.js';
import { describeConflict } from '../budget.js';
import { BusyCheck } from './checks/busy.js';
import { DriftChecker } from './checks/drift.js';
import { IncrementalVerifier } from './checks/incremental-verify.js';
import { LogVacuum } from './checks/log-vacuum.js';
import { VacuumCheck } from './checks/vacuum.js';
import { SchemaCheck } from './checks/schema.js';
import { SourceMap } from './refresh/sources.js';
import { ViewList } from './refresh/view-list.js';
import { ViewModes } from './refresh/view-modes.js';
import { LogPoller } from './refresh/log-poller.js';
import { latestVersion } from '../db/migrate.js';
import type { StartupSettingsSupport } from '../db/startup-settings.js';
import { StartupError, checkDatabase, probeListenUrl, reportStartupSettings } from './startup.js';
import { LISTEN_URL_ENV, listenDiagnosis } from '../db/listen-diagnosis.js';
import { PACKAGE_VERSION } from '../version.js';
import { ReplaceWorker } from '../replace/worker.js';

/** A refresh backend whose client vanished (daemon killed) notices within this interval and frees its locks. */
const CONNECTION_CHECK_INTERVAL = '1s';
/** statement_timeout of the control connections (sweep, probes, failure records). */
const CONTROL_STATEMENT_TIMEOUT_MS = 30_000;
/** The client gives a refresh this long beyond its statement_timeout before it gives up on the server. */
const CLIENT_TIMEOUT_MARGIN_MS = 15_000;
/** One status query and one ping of the HTTP endpoints in flight (SharedResult). */
const HTTP_POOL_SIZE = 2;
/**
 * The HTTP endpoints' statements: a status read behind a lock on view_state fails within this rather than
 * holding one of the two connections, so that /readyz and /metrics say they cannot read the state.
 */
const HTTP_LOCK_TIMEOUT_MS = 1000;
const HTTP_STATEMENT_TIMEOUT_MS = 5000;
/** A view found busy this long (no refresh takes a lock that long between cycles) is named at warn level. */
const BUSY_WARN_MS = 10_000;

export interface Running {
  port: number;
  /** The port of /healthz and /readyz alone. */
  probePort: number;
  refresher: Refresher;
  scheduler: Scheduler;
  listener: Listener;
  sweeper: Sweeper;
  metrics: Metrics;
  driftChecker: DriftChecker;
  incrementalVerifier: IncrementalVerifier;
}

/**
 * The composition root: config -> logger -> pools -> listener -> scheduler -> refresher -> sweeper ->
 * checks -> HTTP, each given what it uses through constructor arguments. Every event subscription between
 * them is made here, in doStart(), except the refresher's to its scheduler's `due` jobs: the refresher is
 * built with the scheduler and is the only one that runs its jobs (refresh/refresher.ts). Every resource
 * registers its release as it is acquired; stop() releases them last-in-first-out (HTTP, checks, sweeper,
 * running refreshes within the grace period, scheduler, listener, pools). start() and stop() are
 * idempotent.
 */
export interface DaemonEvents {
  /** The daemon stopped by itself (not through stop()): the process should exit. */
  ended: [info: { reason: 'schema_incompatible' }];
}

export class Daemon extends EventEmitter<DaemonEvents> {
  private readonly releasers = new Releasers();
  private starting: Promise<Running> | undefined;
  private stopping: Promise<void> | undefined;
  private accepting = false;
  private refresher: Refresher | undefined;
  /** Aborts a start-up that is still waiting for the database when stop() is called. */
  private readonly abort = new AbortController();

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    super();
  }

  start(): Promise<Running> {
    this.starting ??= this.doStart().catch(async (err: unknown) => {
      await this.releasers.release().catch(() => undefined);
      throw err;
    });
    return this.starting;
  }

  private async doStart(): Promise<Running> {
    const { config, logger } = this;
    const separateListenUrl = config.listenUrl !== config.databaseUrl;
    logger.info(
      {
        event: 'starting',
        database: redactUrl(config.databaseUrl),
        ...(separateListenUrl ? { listenDatabase: redactUrl(config.listenUrl) } : {}),
      },
      'mvrefresh starting',
    );
    const { serverVersion, startupSettings } = await checkDatabase(config, logger, this.abort.signal);
    const listenStartupSettings = separateListenUrl
      ? await probeListenUrl(config.listenUrl, logger)
      : startupSettings;
    reportStartupSettings(logger, 'database', config.databaseUrl, startupSettings);
    if (separateListenUrl) reportStartupSettings(logger, 'listen', config.listenUrl, listenStartupSettings);
    // a pooler that refuses start-up settings refuses the connection: connect without them
    const usable = (support: StartupSettingsSupport, settings: Record<string, string>) =>
      support === 'refused' ? undefined : settings;

    // every pool connects to the database URL with the settings its sessions need (unless the pooler in
    // front refuses start-up settings), gives a statement the client margin beyond its server-side timeout,
    // and is released at stop
    const pool = (
      name: string,
      opts: Omit<PoolOptions, 'connectionString' | 'settings' | 'queryTimeoutMs' | 'onError'>,
      statementTimeoutMs: number,
      settings: Record<string, string>,
    ): pg.Pool => {
      const created = createPool({
        ...opts,
        connectionString: config.databaseUrl,
        settings: usable(startupSettings, settings),
        queryTimeoutMs: statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
        onError: (err: Error) =>
          logger.warn(
            { event: 'pool_error', err: scrubSecret(describeError(err), config.databaseUrl) },
            'idle connection lost',
          ),
      });
      this.releasers.add(name, () => created.end());
      return created;
    };
    const controlPool = pool(
      'control pool',
      { applicationName: AppName.control, max: 3 },
      CONTROL_STATEMENT_TIMEOUT_MS,
      sessionSettings(serverVersion, { statementTimeoutMs: CONTROL_STATEMENT_TIMEOUT_MS }),
    );
    // the HTTP endpoints' own connections: a flood of requests cannot take the sweep's or the terminate's
    const httpPool = pool(
      'http pool',
      { applicationName: AppName.http, max: HTTP_POOL_SIZE },
      HTTP_STATEMENT_TIMEOUT_MS,
      {
        ...sessionSettings(serverVersion, { statementTimeoutMs: HTTP_STATEMENT_TIMEOUT_MS }),
        lock_timeout: `${HTTP_LOCK_TIMEOUT_MS}ms`,
      },
    );
    const refreshPool = pool(
      'refresh pool',
      {
        applicationName: AppName.refresh,
        max: config.concurrency,
        // a backend that repeats REFRESH ... CONCURRENTLY grows its catalog caches and slows down, and under
        // steady load the idle timeout never ends it
        maxUses: config.refreshConnectionMaxUses,
        maxLifetimeSeconds: Math.ceil(config.refreshConnectionMaxAgeMs / 1000),
      },
      config.refreshTimeoutMs,
      sessionSettings(serverVersion, {
        statementTimeoutMs: config.refreshTimeoutMs,
        idleInTransactionMs: config.refreshTimeoutMs,
        connectionCheckInterval: CONNECTION_CHECK_INTERVAL,
      }),
    );

    // the periodic verify of incremental views: one connection, for as long as a refresh may take; opened
    // only while a verify runs (the pool's idle timeout closes it)
    const verifyPool = pool(
      'verify pool',
      { applicationName: AppName.verify, max: 1 },
      config.refreshTimeoutMs,
      sessionSettings(serverVersion, {
        statementTimeoutMs: config.refreshTimeoutMs,
        idleInTransactionMs: config.refreshTimeoutMs,
        connectionCheckInterval: CONNECTION_CHECK_INTERVAL,
      }),
    );

    const metrics = new Metrics();
    const sources = new SourceMap();
    const modes = new ViewModes();
    const schemaCheck = new SchemaCheck({ pool: controlPool, logger, knownVersion: await latestVersion() });
    const listener = new Listener({
      connectionString: config.listenUrl,
      settings: usable(
        listenStartupSettings,
        sessionSettings(serverVersion, { statementTimeoutMs: config.listener.heartbeatTimeoutMs }),
      ),
      logger,
      heartbeatIntervalMs: config.listener.heartbeatIntervalMs,
      heartbeatTimeoutMs: config.listener.heartbeatTimeoutMs,
      reconnectMaxDelayMs: config.listener.reconnectMaxDelayMs,
      notifyFromElsewhere: (channel, payload) => controlPool.query(sql.notify, [channel, payload]),
    });
    this.releasers.add('listener', () => listener.stop());

    const scheduler = new Scheduler({
      logger,
      maxStalenessMs: config.maxStalenessMs,
      refreshBudget: config.refreshBudget,
    });
    this.releasers.add('scheduler', () => scheduler.stop());

    const refresher = new Refresher({
      pool: refreshPool,
      controlPool,
      scheduler,
      logger,
      metrics,
      concurrency: config.concurrency,
      writerWaitMs: config.writerWaitMs,
      lockTimeoutMs: config.lockTimeoutMs,
      backoffBaseMs: config.backoffBaseMs,
      backoffMaxMs: config.backoffMaxMs,
      schemaCheck,
      modes,
    });
    this.refresher = refresher;
    this.releasers.add('refresher', () => refresher.drain(config.shutdownGraceMs));

    const sweeper = new Sweeper({
      pool: controlPool,
      scheduler,
      logger,
      metrics,
      intervalMs: config.sweepIntervalMs,
      schemaCheck,
      views: new ViewList({ pool: controlPool, scheduler, sources, metrics, modes }),
    });
    this.releasers.add('sweeper', () => sweeper.stop());

    // writes to tables that only incremental views read notify nothing: their logs are polled
    const logPoller = new LogPoller({
      pool: controlPool,
      scheduler,
      modes,
      logger,
      intervalMs: config.logPollIntervalMs,
    });
    this.releasers.add('log poller', () => logPoller.stop());

    // the periodic checks read the catalog through the control pool and report through the metrics
    const checkWith = { pool: controlPool, logger, metrics };
    const driftChecker = new DriftChecker({ ...checkWith, intervalMs: config.driftCheckIntervalMs });
    this.releasers.add('drift checker', () => driftChecker.stop());
    const vacuumCheck = new VacuumCheck({ ...checkWith, intervalMs: config.vacuumCheckIntervalMs });
    this.releasers.add('vacuum check', () => vacuumCheck.stop());
    const logVacuum = new LogVacuum({ ...checkWith, intervalMs: config.logVacuumIntervalMs });
    this.releasers.add('log vacuum', () => logVacuum.stop());
    const incrementalVerifier = new IncrementalVerifier({
      pool: verifyPool,
      controlPool,
      logger,
      metrics,
      intervalMs: config.incrementalVerifyIntervalMs,
      // a verify evaluates the whole definition: it spaces the view's next refresh like a refresh would
      charge: (viewId, durationMs) => scheduler.charge(viewId, durationMs),
    });
    this.releasers.add('incremental verifier', () => incrementalVerifier.stop());

    listener.on('view', (viewId) => {
      metrics.notifications.inc({ kind: scheduler.knows(viewId) ? 'view' : 'unknown' });
      scheduler.schedule(viewId, 'notify');
    });
    listener.on('table', (relid) => {
      const readers = sources.viewsReading(relid);
      metrics.notifications.inc({ kind: readers.length > 0 ? 'table' : 'unknown' });
      // a table no known view reads: a view was watched since the list was loaded
      if (readers.length === 0) sweeper.reloadForUnknown();
      for (const id of readers) scheduler.schedule(id, 'notify');
    });
    listener.on('schema', () => void schemaCheck.check());
    listener.on('ddl', ({ coalesced }) => {
      metrics.notifications.inc({ kind: 'ddl' }, coalesced);
      driftChecker.check('ddl');
    });
    // watch or unwatch committed: the views' list and settings now, not at the next sweep
    listener.on('reload', ({ coalesced }) => {
      metrics.notifications.inc({ kind: 'reload' }, coalesced);
      sweeper.sweep('views_changed');
    });
    // the views' sources changed: reload them (table notifications are mapped through them) and sweep
    driftChecker.on('drift', () => sweeper.sweep('drift'));
    schemaCheck.on('incompatible', ({ message, state, knownVersion }) => {
      this.accepting = false;
      logger.error(
        {
          event: 'schema_incompatible',
          version: PACKAGE_VERSION,
          knownSchema: knownVersion,
          schema: state.version,
          breakingVersion: state.breakingVersion,
          action: 'deploy the new mvrefresh version',
        },
        message,
      );
      void this.stop().finally(() => this.emit('ended', { reason: 'schema_incompatible' }));
    });
    listener.on('invalid', () => metrics.notifications.inc({ kind: 'invalid' }));
    const undeliveredReason = listenDiagnosis({ separateListenUrl, sweepIntervalMs: config.sweepIntervalMs });
    let diagnosed = false;
    listener.on('undelivered', () => metrics.listenerUndelivered.inc());
    const { databaseUrl, listenUrl, sweepIntervalMs: intervalMs } = config;
    // the replace worker's build spans transactions on one session: it runs only where LISTEN delivers
    // (a transaction pooler does not, and would hand its session settings to other clients)
    const replaceWorker = new ReplaceWorker({
      databaseUrl,
      listenUrl,
      logger,
      intervalMs,
      sessionUsable: () => listener.delivering === true,
    });
    this.releasers.add('replace', () => replaceWorker.stop());
    listener.on('delivery', ({ delivering, first }) => {
      if (delivering) {
        replaceWorker.kick();
        if (!first)
          logger.info({ event: 'listen_delivering' }, 'the LISTEN connection receives notifications again');
        return;
      }
      // error level once: the same diagnosis every heartbeat would bury everything else
      const fields = {
        event: 'listen_not_delivering',
        listenDatabase: redactUrl(config.listenUrl),
        sweepIntervalMs: config.sweepIntervalMs,
        setting: LISTEN_URL_ENV,
      };
      if (diagnosed) logger.warn(fields, undeliveredReason);
      else logger.error(fields, undeliveredReason);
      diagnosed = true;
    });
    listener.on('connected', ({ reconnect }) => {
      if (reconnect) metrics.listenerReconnects.inc();
      // notifications sent while LISTEN was not in place are lost: a sweep finds what they announced
      sweeper.sweep(reconnect ? 'reconnect' : 'connect');
      // DDL notified while LISTEN was not in place is lost too
      if (reconnect) driftChecker.check('reconnect');
    });
    const busyCheck = new BusyCheck({ ...checkWith, warnAfterMs: BUSY_WARN_MS });
    refresher.on('report', (report) => busyCheck.observe(report));
    scheduler.on('unknown', () => sweeper.reloadForUnknown());
    scheduler.on('target', (c) => {
      const fields = {
        event: c.met ? 'target_met' : 'target_unmet',
        view: c.view,
        targetMs: c.targetMs,
        budget: c.budget,
        expectedMs: Math.round(c.expectedMs),
        costMs: Math.round(c.costMs),
        minIntervalMs: Math.round(c.minIntervalMs),
        achievableMs: Math.round(c.achievableMs),
      };
      if (c.met) logger.info(fields, `${c.view}: the budget allows the staleness target again`);
      else
        logger.warn(fields, `${c.view}: ${describeConflict(c.costMs, c.budget, c.targetMs, c.expectedMs)}`);
    });
    scheduler.on('miss', (m) => {
      metrics.targetMisses.inc({ view: m.view });
      logger.debug(
        { event: 'target_miss', view: m.view, stalenessMs: Math.round(m.stalenessMs), targetMs: m.targetMs },
        `${m.view} was ${Math.round(m.stalenessMs)} ms stale, target ${m.targetMs} ms`,
      );
      // counted in view_state, the one count of misses (`mvrefresh status`, /views); a lost count is not
      // worth a retry
      controlPool.query(sql.recordTargetMiss, [m.viewId, m.stalenessMs]).catch(() => undefined);
    });

    const http = new HttpServer({
      host: config.http.host,
      port: config.http.port,
      probePort: config.http.probePort,
      adminToken: config.http.adminToken,
      maxConnections: config.http.maxConnections,
      maxConnectionsPerClient: config.http.maxConnectionsPerClient,
      pool: httpPool,
      listener,
      scheduler,
      refresher,
      metrics,
      logger,
      isAccepting: () => this.accepting,
      undeliveredReason,
    });
    let port: number;
    let probePort: number;
    try {
      ({ port, probePort } = await http.start());
    } catch (err) {
      await http.stop();
      throw new StartupError(
        `cannot listen on ${config.http.host}:${config.http.port} (probes: ${config.http.probePort}): ${describeError(err)}`,
      );
    }
    this.releasers.add('http', () => http.stop());

    // the start sweep loads the views before LISTEN, so that the first notifications find them known
    await sweeper.start();
    listener.start();
    logPoller.start();
    replaceWorker.start();
    driftChecker.start();
    vacuumCheck.start();
    logVacuum.start();
    incrementalVerifier.start();
    this.accepting = true;
    logger.info(
      {
        event: 'started',
        port,
        probePort,
        views: scheduler.viewCount,
        concurrency: config.concurrency,
        maxStalenessMs: config.maxStalenessMs,
        refreshBudget: config.refreshBudget,
      },
      'mvrefresh running',
    );
    return {
      port,
      probePort,
      refresher,
      scheduler,
      listener,
      sweeper,
      metrics,
      driftChecker,
      incrementalVerifier,
    };
  }

  /** Graceful stop: no new work, running refreshes get the grace period, then everything is released. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.accepting = false;
      this.abort.abort();
      await this.starting?.catch(() => undefined);
      this.logger.info({ event: 'stopping', graceMs: this.config.shutdownGraceMs }, 'mvrefresh stopping');
      await this.releasers.release((name, err) =>
        this.logger.error(
          { event: 'release_failed', resource: name, err: describeError(err) },
          `releasing ${name} failed`,
        ),
      );
      this.logger.info({ event: 'stopped' }, 'mvrefresh stopped');
    })();
    return this.stopping;
  }

  /** For a second signal: terminate the running refreshes' backends at once. */
  async terminateNow(): Promise<void> {
    await this.refresher?.terminateRunning();
  }
}
