import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { sql } from '../db/sql.js';
import { describeError } from '../db/errors.js';
import { withTimeout } from './timers.js';
import type { StatusRow } from '../db/status.js';
import type { Listener } from './listener.js';
import type { Metrics } from './metrics.js';
import type { Scheduler } from './scheduler.js';
import type { Refresher } from './refresher.js';
import { parseViewId } from './view-id.js';

/** /healthz fails when the event loop has not turned for this long. */
const STALL_LIMIT_MS = 10_000;
const LOOP_TICK_MS = 1000;
/** /readyz and /views give the database this long to answer. */
const DB_PROBE_TIMEOUT_MS = 2000;

export interface HttpOptions {
  host: string;
  port: number;
  adminToken: string;
  pool: pg.Pool;
  listener: Listener;
  scheduler: Scheduler;
  refresher: Refresher;
  metrics: Metrics;
  logger: Logger;
  /** False once shutdown began: /readyz answers 503. */
  isAccepting: () => boolean;
}

/**
 * One port for probes and scrapers: /healthz (process alive, event loop turning), /readyz (LISTEN up and
 * database answering), /views (JSON), /metrics (Prometheus). Nothing changes state unless an admin token
 * is configured: then POST /views/<id>/refresh with `Authorization: Bearer <token>` queues a refresh.
 */
export class HttpServer {
  private server: Server | undefined;
  private loopTimer: NodeJS.Timeout | undefined;
  private lastTick = Date.now();

  constructor(private readonly opts: HttpOptions) {}

  /** Listens; resolves with the bound port. Fails when the port is taken. Idempotent. */
  async start(): Promise<number> {
    if (this.server) return (this.server.address() as AddressInfo).port;
    this.loopTimer = setInterval(() => (this.lastTick = Date.now()), LOOP_TICK_MS);
    this.loopTimer.unref();
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.opts.logger.warn({ event: 'http_error', err: describeError(err) }, 'HTTP request failed');
        res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return (server.address() as AddressInfo).port;
  }

  /** Closes the port and every open connection. Idempotent. */
  async stop(): Promise<void> {
    clearInterval(this.loopTimer);
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** Gauges are sampled at scrape time: queue state from memory, staleness from the database. */
  private async sampleGauges(): Promise<void> {
    const { metrics, scheduler, refresher, listener } = this.opts;
    metrics.queueDepth.set({ state: 'waiting' }, scheduler.waitingCount);
    metrics.queueDepth.set({ state: 'queued' }, refresher.queued);
    metrics.queueDepth.set({ state: 'running' }, refresher.active);
    metrics.listenerConnected.set(listener.connected ? 1 : 0);
    const rows = await this.views(this.opts.pool).catch(() => undefined);
    if (!rows) return;
    // every replica reports the database's truth; views no longer watched disappear
    metrics.staleness.reset();
    metrics.consecutiveFailures.reset();
    for (const r of rows) {
      metrics.staleness.set({ view: r.view }, r.staleness_seconds);
      metrics.consecutiveFailures.set({ view: r.view }, r.consecutive_failures);
    }
  }

  private async views(pool: pg.Pool): Promise<StatusRow[]> {
    return (await withTimeout(pool.query<StatusRow>(sql.status), DB_PROBE_TIMEOUT_MS, 'the database')).rows;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let path = '?';
    try {
      const parsed = requestPath(req.url);
      if (parsed === undefined) return json(res, 400, { error: 'bad request target' });
      path = parsed;
      if (req.method === 'GET' || req.method === 'HEAD') {
        switch (path) {
          case '/healthz':
            return this.healthz(res);
          case '/readyz':
            return await this.readyz(res);
          case '/views':
            return await this.viewsJson(res);
          case '/metrics':
            return await this.metricsText(res);
        }
      }
      const manual = parseViewId(/^\/views\/([^/]+)\/refresh$/.exec(path)?.[1] ?? '');
      if (manual !== undefined && req.method === 'POST') return this.manualRefresh(req, res, manual);
      if (['/healthz', '/readyz', '/views', '/metrics'].includes(path) || manual !== undefined)
        return json(res, 405, { error: 'method not allowed' });
      return json(res, 404, { error: 'not found', path });
    } catch (err) {
      this.opts.logger.warn({ event: 'http_error', path, err: describeError(err) }, 'HTTP request failed');
      if (!res.headersSent) json(res, 503, { error: describeError(err) });
      else res.end();
    }
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
      await withTimeout(this.opts.pool.query(sql.ping), DB_PROBE_TIMEOUT_MS, 'the database');
    } catch (err) {
      return json(res, 503, {
        status: 'not ready',
        reason: `the database does not answer: ${describeError(err)}`,
      });
    }
    json(res, 200, { status: 'ready' });
  }

  private async viewsJson(res: ServerResponse): Promise<void> {
    const rows = await this.views(this.opts.pool);
    json(
      res,
      200,
      rows.map((r) => ({
        id: r.id,
        name: r.view,
        dirty: r.dirty,
        lastDirtiedAt: r.dirty_since,
        lastRefreshedAt: r.last_refreshed_at,
        stalenessSeconds: r.staleness_seconds,
        lastDurationMs: r.last_duration_ms,
        lastOutcome: r.last_outcome,
        lastError: r.last_error,
        lastSqlstate: r.last_sqlstate,
        consecutiveFailures: r.consecutive_failures,
        nextAttemptAt: r.next_attempt_at,
        driftDetection: r.drift_detection,
      })),
    );
  }

  private async metricsText(res: ServerResponse): Promise<void> {
    await this.sampleGauges();
    const body = await this.opts.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': this.opts.metrics.registry.contentType });
    res.end(body);
  }

  private manualRefresh(req: IncomingMessage, res: ServerResponse, viewId: number): void {
    const token = this.opts.adminToken;
    if (!token)
      return json(res, 403, { error: 'state-changing endpoints are disabled (set MVREFRESH_ADMIN_TOKEN)' });
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    if (!sameSecret(given, token)) return json(res, 401, { error: 'bad or missing bearer token' });
    if (!this.opts.scheduler.knows(viewId))
      return json(res, 404, { error: `no watched view with id ${viewId}` });
    this.opts.scheduler.schedule(viewId, 'manual');
    json(res, 202, { status: 'queued', id: viewId });
  }
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

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}
