import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { sql } from '../../db/sql.js';
import { describeError } from '../../db/errors.js';
import { withTimeout } from '../lib/timers.js';
import { isGone, loadStatus, type StatusRow } from '../../db/status.js';
import {
  HTTP_LIMITS,
  PROBE_LIMITS,
  applyLimits,
  effectiveMaxConnections,
  probeServerOptions,
  serverOptions,
} from './limits.js';
import { RequestGate } from './request-gate.js';
import { LogThrottle } from '../lib/log-throttle.js';
import { redactErrorText } from './redact.js';
import { SharedResult } from './shared-result.js';
import type { Listener } from '../refresh/listener.js';
import type { Metrics } from '../metrics.js';
import type { Scheduler } from '../refresh/scheduler.js';
import type { Refresher } from '../refresh/refresher.js';
import { parseViewId } from '../lib/view-id.js';
import { describeConflict } from '../../budget.js';

/** /healthz fails when the event loop has not turned for this long. */
const STALL_LIMIT_MS = 10_000;
const LOOP_TICK_MS = 1000;
/** /readyz and /views give the database this long to answer. */
const DB_PROBE_TIMEOUT_MS = 2000;
/** /views and /metrics share one status query per this interval, /readyz one ping, however many clients. */
const STATUS_TTL_MS = 1000;
const PING_TTL_MS = 500;
/** /readyz answers from a ping that succeeded this recently, so that a slow database cannot time a probe out. */
const PING_FRESH_MS = 3000;
/** One http_error line per distinct error and interval. */
const ERROR_LOG_INTERVAL_MS = 10_000;

export interface HttpOptions {
  host: string;
  port: number;
  /** The port of /healthz and /readyz alone (0: any free port). */
  probePort: number;
  adminToken: string;
  maxConnections: number;
  maxConnectionsPerClient: number;
  /**
   * Connections of the HTTP endpoints alone (two suffice: one status query and one ping in flight), so that
   * no request can take a connection that the sweep, failure records or shutdown's cancel need.
   */
  pool: pg.Pool;
  listener: Listener;
  scheduler: Scheduler;
  refresher: Refresher;
  metrics: Metrics;
  logger: Logger;
  /** False once shutdown began: /readyz answers 503. */
  isAccepting: () => boolean;
  /** What /readyz says while LISTEN does not deliver (listenDiagnosis()). */
  undeliveredReason: string;
}

/** The ports bound by start(). */
export interface HttpPorts {
  port: number;
  probePort: number;
}

/**
 * Two ports. The probe port answers /healthz and /readyz alone, with its own connection caps and short
 * header timeouts: a flood of the HTTP port (slow, half-open or re-opening sockets) holds none of its
 * connections, and one client can hold only a few of them. The HTTP port serves probes and scrapers: /healthz (process alive, event loop turning), /readyz (LISTEN up and
 * database answering; `mode: degraded` while LISTEN does not deliver and refreshes wait for the sweep), /views (JSON), /metrics (Prometheus). Nothing changes state unless an admin token
 * is configured: then POST /views/<id>/refresh with `Authorization: Bearer <token>` queues a refresh, and
 * POST /views/<id>/pause and /resume pause and resume a view.
 */
export class HttpServer {
  private server: Server | undefined;
  private probeServer: Server | undefined;
  private loopTimer: NodeJS.Timeout | undefined;
  private lastTick = Date.now();
  private readonly status: SharedResult<StatusRow[]>;
  private readonly ping: SharedResult<unknown>;
  private readonly metricsBody: SharedResult<string>;
  private readonly errorLog = new LogThrottle(ERROR_LOG_INTERVAL_MS);
  private readonly bulkGate: RequestGate;

  constructor(private readonly opts: HttpOptions) {
    this.bulkGate = new RequestGate(HTTP_LIMITS.bulkPerSecond, HTTP_LIMITS.bulkBurst, opts.maxConnections);
    this.status = new SharedResult(
      () => withTimeout(loadStatus(opts.pool), DB_PROBE_TIMEOUT_MS, 'the database'),
      STATUS_TTL_MS,
    );
    this.ping = new SharedResult(
      () => withTimeout(opts.pool.query(sql.ping), DB_PROBE_TIMEOUT_MS, 'the database'),
      PING_TTL_MS,
    );
    this.metricsBody = new SharedResult(async () => {
      await this.sampleGauges();
      return opts.metrics.registry.metrics();
    }, STATUS_TTL_MS);
  }

  /** Listens on both ports; resolves with the bound ports. Fails when a port is taken. Idempotent. */
  async start(): Promise<HttpPorts> {
    if (this.server && this.probeServer) return this.ports();
    this.loopTimer = setInterval(() => (this.lastTick = Date.now()), LOOP_TICK_MS);
    this.loopTimer.unref();
    const server = createServer(serverOptions, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.logError('?', err);
        res.destroy();
      });
    });
    const maxConnections = effectiveMaxConnections(this.opts.maxConnections);
    if (maxConnections < this.opts.maxConnections)
      this.opts.logger.warn(
        { event: 'http_connections_capped', configured: this.opts.maxConnections, maxConnections },
        'the file descriptor limit lowers the HTTP connection cap',
      );
    applyLimits(
      server,
      { total: maxConnections, perClient: Math.min(maxConnections, this.opts.maxConnectionsPerClient) },
      () => this.bulkGate.shedOldest(),
    );
    this.server = server;
    await listen(server, this.opts.port, this.opts.host);
    const probeServer = createServer(probeServerOptions, (req, res) => {
      this.handleProbe(req, res).catch((err: unknown) => {
        this.logError('?', err);
        res.destroy();
      });
    });
    applyLimits(probeServer, {
      total: PROBE_LIMITS.maxConnections,
      perClient: PROBE_LIMITS.perClientConnections,
    });
    this.probeServer = probeServer;
    await listen(probeServer, this.opts.probePort, this.opts.host);
    return this.ports();
  }

  private ports(): HttpPorts {
    return {
      port: (this.server?.address() as AddressInfo).port,
      probePort: (this.probeServer?.address() as AddressInfo).port,
    };
  }

  /** Closes the port and every open connection. Idempotent. */
  async stop(): Promise<void> {
    clearInterval(this.loopTimer);
    this.bulkGate.close();
    const servers = [this.server, this.probeServer];
    this.server = undefined;
    this.probeServer = undefined;
    await Promise.all(
      servers.map(
        (server) =>
          server &&
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
  }

  /** Gauges are sampled at scrape time: queue state from memory, staleness from the database. */
  private async sampleGauges(): Promise<void> {
    const { metrics, scheduler, refresher, listener } = this.opts;
    metrics.queueDepth.set({ state: 'waiting' }, scheduler.waitingCount);
    metrics.queueDepth.set({ state: 'queued' }, refresher.queued);
    metrics.queueDepth.set({ state: 'running' }, refresher.active);
    metrics.listenerConnected.set(listener.connected ? 1 : 0);
    metrics.listenerDelivering.set(listener.delivering === false ? 0 : 1);
    const rows = await this.status.get().catch(() => undefined);
    // gauges read from the database: absent, not frozen, while it cannot be read, and said so
    metrics.stateReadOk.set(rows ? 1 : 0);
    const lastRead = this.status.lastSucceededAt;
    if (lastRead !== undefined) metrics.stateLastReadTimestamp.set(lastRead / 1000);
    // every replica reports the database's truth; views no longer watched disappear
    metrics.staleness.reset();
    metrics.consecutiveFailures.reset();
    metrics.viewMode.reset();
    for (const g of [
      metrics.targetSeconds,
      metrics.budgetShare,
      metrics.budgetInUse,
      metrics.achievableStaleness,
    ])
      g.reset();
    if (!rows) return;
    for (const r of rows) {
      metrics.staleness.set({ view: r.view }, r.staleness_seconds);
      // a gone view (dropped or renamed) is not failing: it stays out of the failure alert
      metrics.consecutiveFailures.set({ view: r.view }, isGone(r) ? 0 : r.consecutive_failures);
      metrics.viewMode.set(
        { view: r.view, mode: r.incremental ? 'incremental' : 'full', reason: r.mode_reason ?? '' },
        1,
      );
      const plan = scheduler.describe(r.id);
      if (!plan) continue;
      metrics.targetSeconds.set({ view: r.view }, plan.targetMs / 1000);
      metrics.budgetShare.set({ view: r.view }, plan.budget);
      metrics.budgetInUse.set({ view: r.view }, plan.budgetInUse);
      metrics.achievableStaleness.set({ view: r.view }, plan.achievableMs / 1000);
    }
  }

  private logError(path: string, err: unknown): void {
    const text = describeError(err);
    const suppressed = this.errorLog.admit(text);
    if (suppressed === undefined) return;
    this.opts.logger.warn({ event: 'http_error', path, err: text, suppressed }, 'HTTP request failed');
  }

  /** Parses the request target and routes it by path; an error is logged (throttled) and answered 503. */
  private async serve(
    req: IncomingMessage,
    res: ServerResponse,
    route: (path: string) => Promise<void> | void,
  ): Promise<void> {
    let path = '?';
    try {
      const parsed = requestPath(req.url);
      if (parsed === undefined) return json(res, 400, { error: 'bad request target' });
      path = parsed;
      return await route(path);
    } catch (err) {
      this.logError(path, err);
      if (!res.headersSent) json(res, 503, { error: describeError(err) });
      else res.end();
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    return this.serve(req, res, async (path) => {
      if (req.method === 'GET' || req.method === 'HEAD') {
        switch (path) {
          case '/healthz':
            return this.healthz(res);
          case '/readyz':
            return await this.readyz(res);
          case '/views':
            if (!(await this.bulkGate.admit())) return busy(res);
            return await this.viewsJson(req, res);
          case '/metrics':
            if (!(await this.bulkGate.admit())) return busy(res);
            return await this.metricsText(res);
        }
      }
      const action = /^\/views\/([^/]+)\/(refresh|pause|resume)$/.exec(path);
      const target = parseViewId(action?.[1] ?? '');
      if (target !== undefined && action && req.method === 'POST')
        return await this.viewAction(req, res, target, action[2] as 'refresh' | 'pause' | 'resume');
      if (['/healthz', '/readyz', '/views', '/metrics'].includes(path) || target !== undefined)
        return json(res, 405, { error: 'method not allowed' });
      return json(res, 404, { error: 'not found', path });
    });
  }

  /** The probe port: /healthz and /readyz, nothing else. */
  private handleProbe(req: IncomingMessage, res: ServerResponse): Promise<void> {
    return this.serve(req, res, async (path) => {
      if (path !== '/healthz' && path !== '/readyz') return json(res, 404, { error: 'not found', path });
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return json(res, 405, { error: 'method not allowed' });
      if (path === '/healthz') return this.healthz(res);
      return await this.readyz(res);
    });
  }

  private healthz(res: ServerResponse): void {
    const lag = Date.now() - this.lastTick;
    if (lag > STALL_LIMIT_MS) return json(res, 503, { status: 'stalled', eventLoopLagMs: lag });
    json(res, 200, { status: 'ok' });
  }

  private async readyz(res: ServerResponse): Promise<void> {
    if (!this.opts.isAccepting()) return json(res, 503, { status: 'not ready', reason: 'shutting down' });
    if (!this.opts.listener.connected)
      return json(res, 503, { status: 'not ready', reason: 'the LISTEN connection is down' });
    try {
      if (!this.ping.succeededWithin(PING_FRESH_MS)) await this.ping.get();
    } catch (err) {
      return json(res, 503, {
        status: 'not ready',
        reason: `the database does not answer: ${describeError(err)}`,
      });
    }
    // the state cannot be read (privileges revoked, view_state locked): refreshes may go on, but neither
    // /views nor the metrics can say how fresh the views are: ready, so that the application's pod stays
    // in service, and degraded, with the reason (mvrefresh_state_read_ok is 0 for the alert)
    this.status.get().catch(() => undefined);
    const stateFailure = this.status.lastFailure;
    if (stateFailure)
      return json(res, 200, {
        status: 'ready',
        mode: 'degraded',
        reason: `cannot read mvrefresh's state: ${describeError(stateFailure.error)}`,
      });
    // refreshes still happen, on the sweep: ready, so that a rollout is not held up, but said plainly
    if (this.opts.listener.delivering === false)
      return json(res, 200, { status: 'ready', mode: 'degraded', reason: this.opts.undeliveredReason });
    json(res, 200, { status: 'ready' });
  }

  private async viewsJson(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rows = await this.status.get();
    // error texts can quote row values: in full only for the admin
    const full = this.authorized(req);
    json(
      res,
      200,
      rows.map((r) => {
        const plan = this.opts.scheduler.describe(r.id);
        return {
          id: r.id,
          name: r.view,
          dirty: r.dirty,
          paused: r.paused,
          lastDirtiedAt: r.dirty_since,
          lastRefreshedAt: r.last_refreshed_at,
          stalenessSeconds: r.staleness_seconds,
          lastDurationMs: r.last_duration_ms,
          lastOutcome: r.last_outcome,
          lastError: full ? r.last_error : redactErrorText(r.last_error, r.last_sqlstate),
          lastSqlstate: r.last_sqlstate,
          consecutiveFailures: r.consecutive_failures,
          gone: isGone(r),
          nextAttemptAt: r.next_attempt_at,
          lockHolders: r.lock_holders,
          driftDetection: r.drift_detection,
          mode: r.mode,
          modeReason: r.mode_reason,
          incremental: r.incremental && {
            lastApplyKind: r.incremental.last_apply_kind,
            lastApplyKeys: r.incremental.last_apply_keys,
            lastApplyMs: r.incremental.last_apply_ms,
            lastApplyAt: r.incremental.last_apply_at,
            lastFullMs: r.incremental.last_full_ms,
            lastVerifyAt: r.incremental.last_verify_at,
            verifyMismatches: r.incremental.verify_mismatches,
          },
          // what this process plans: the target, the budget and what it allows; the misses from view_state
          ...(plan
            ? {
                targetSeconds: plan.targetMs / 1000,
                budget: plan.budget,
                budgetInUse: round3(plan.budgetInUse),
                expectedRefreshMs: Math.round(plan.expectedMs),
                meanRefreshMs: Math.round(plan.costMs),
                minIntervalMs: Math.round(plan.minIntervalMs),
                achievableStalenessSeconds: round3(plan.achievableMs / 1000),
                targetMet: plan.targetMet,
                ...(plan.targetMet
                  ? {}
                  : { targetProblem: describeConflict(plan.costMs, plan.budget, plan.targetMs) }),
                targetMisses: Number(r.target_misses),
                nextRefreshAt: plan.nextRefreshAt === undefined ? null : new Date(plan.nextRefreshAt),
              }
            : {}),
        };
      }),
    );
  }

  private async metricsText(res: ServerResponse): Promise<void> {
    const body = await this.metricsBody.get();
    res.writeHead(200, { 'content-type': this.opts.metrics.registry.contentType });
    res.end(body);
  }

  /** POST /views/<id>/refresh, /pause, /resume: only with the admin token. */
  private async viewAction(
    req: IncomingMessage,
    res: ServerResponse,
    viewId: number,
    action: 'refresh' | 'pause' | 'resume',
  ): Promise<void> {
    if (!this.opts.adminToken)
      return json(res, 403, { error: 'state-changing endpoints are disabled (set MVREFRESH_ADMIN_TOKEN)' });
    if (!this.authorized(req)) return json(res, 401, { error: 'bad or missing bearer token' });
    const name = this.opts.scheduler.nameOf(viewId);
    if (name === undefined) return json(res, 404, { error: `no watched view with id ${viewId}` });
    if (action === 'refresh') {
      this.opts.scheduler.schedule(viewId, 'manual');
      return json(res, 202, { status: 'queued', id: viewId });
    }
    // in the database, so that every replica and refresh_dirty() honour it; resuming notifies the daemons
    const { rows } = await withTimeout(
      this.opts.pool.query<{ report: { paused: boolean; changed: boolean } }>(sql.setPaused, [
        name,
        action === 'pause',
        null,
      ]),
      DB_PROBE_TIMEOUT_MS,
      'the database',
    );
    this.opts.logger.info({ event: action, view: name }, `${action} ${name}`);
    json(res, 200, { id: viewId, ...rows[0]?.report });
  }

  /** The request carries the admin token (never true when none is configured). */
  private authorized(req: IncomingMessage): boolean {
    const token = this.opts.adminToken;
    if (!token) return false;
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    return sameSecret(given, token);
  }
}

/** Binds the server; rejects when the port is taken. */
function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/**
 * The path of a request target, or undefined when it is not one: `new URL()` throws on targets such as
 * `//[` or `http://x:99999/`, and nothing a client sends may throw outside the handler's error boundary.
 */
function requestPath(target: string | undefined): string | undefined {
  let url: URL;
  try {
    url = new URL(target ?? '/', 'http://localhost');
  } catch {
    return undefined;
  }
  return url.pathname.replace(/\/+$/, '') || '/';
}

function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

function busy(res: ServerResponse): void {
  res.setHeader('retry-after', '1');
  res.setHeader('connection', 'close');
  json(res, 429, { error: 'too many requests' });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}
