import { CHANNEL, DDL_CHANGED, SCHEMA_CHANGED, VIEWS_CHANGED } from '../../db/protocol.js';
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import pgListen, { type Subscriber } from 'pg-listen';
import type { Logger } from '../../logger.js';
import { AppName, CONNECT_TIMEOUT_MS, startupOptions } from '../../db/connect.js';
import { describeError, isPgError } from '../../db/errors.js';
import { scrubSecret } from '../../db/url.js';
import { backoffDelay } from '../lib/backoff.js';
import { TimeoutError, withTimeout } from '../lib/timers.js';
import { parseViewId } from '../lib/view-id.js';
import { parseTableNotification } from './sources.js';
import { RateLimit } from './rate-limit.js';

/**
 * Any role that can connect may NOTIFY the channel: the payloads that start work over every watched view
 * (ddl: a drift check; reload: a reload of the views; schema: a look at the schema version) start it at
 * most once per this interval, the rest coalesced into one run at the end of the interval.
 */
export const NOTIFY_WORK_MIN_INTERVAL_MS = 1000;

const RECONNECT_BASE_MS = 250;
/** How long close() of a dead connection may take before its socket is destroyed. */
const CLOSE_TIMEOUT_MS = 2000;
/** Payload of the heartbeat's NOTIFY through the LISTEN connection itself: a round trip, nothing more. */
const SELF_PAYLOAD = 'ping';

/**
 * An error that ends a connection: a socket error, or a server error of FATAL or PANIC severity (an ERROR
 * ends only its statement, such as a heartbeat's NOTIFY cancelled by statement_timeout).
 */
function isFatal(err: Error): boolean {
  const severity = (err as { severity?: unknown }).severity;
  return typeof severity !== 'string' || severity === 'FATAL' || severity === 'PANIC';
}

export interface ListenerOptions {
  connectionString: string;
  /** Session settings of the LISTEN connection (see sessionSettings()); undefined where a pooler refuses them. */
  settings: Record<string, string> | undefined;
  logger: Logger;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  reconnectMaxDelayMs: number;
  /**
   * Sends a NOTIFY from another session than the LISTEN connection (the daemon's control pool): the
   * heartbeat's proof that notifications reach this connection, as the triggers' do.
   */
  notifyFromElsewhere: (channel: string, payload: string) => Promise<unknown>;
}

export interface ListenerEvents {
  /** A notification named a view (the triggers send its id in decimal). */
  view: [viewId: number];
  /** A notification named a table that turned dirty ('t' and its oid): every view reading it is due. */
  table: [relid: number];
  /** `migrate` changed the schema: check that this build still understands it. */
  schema: [];
  /**
   * The event trigger saw DDL that may change what a watched view reads: time for a drift check. At most
   * once per NOTIFY_WORK_MIN_INTERVAL_MS; coalesced: the notifications it stands for.
   */
  ddl: [info: { coalesced: number }];
  /** `watch` or `unwatch` changed the views or their settings: reload them (rate-limited like ddl). */
  reload: [info: { coalesced: number }];
  /** A notification on the channel whose payload is no view id: nothing is done for it. */
  invalid: [info: { payloadBytes: number }];
  /** After LISTEN is in place, first time and after every reconnect: time for a catch-up sweep. */
  connected: [info: { reconnect: boolean }];
  disconnected: [info: { reason: string }];
  /**
   * A heartbeat's verdict on delivery changed (first: the first verdict): false when another session's
   * NOTIFY did not come back although the connection answers (LISTEN through a transaction pooler); true
   * when one came back.
   */
  delivery: [info: { delivering: boolean; first: boolean }];
  /** A heartbeat whose notification from another session did not come back (one per heartbeat). */
  undelivered: [];
}

interface Connection {
  subscriber: Subscriber;
  sockets: Socket[];
  /** What ended the connection as pg saw it (server error, socket error): pg-listen reports it generically. */
  causes: Error[];
  heartbeat?: NodeJS.Timeout;
  /** The nonce another session notified, and what to call when it comes back. */
  pendingBeat?: { nonce: string; resolve: () => void } | undefined;
  /** When the connection last delivered a notification, on any channel. */
  lastReceivedAt: number;
}

/**
 * The one LISTEN connection, over pg-listen, with pg-listen's own recovery replaced:
 *
 *   stopped --start()--> connecting --LISTEN ok--> connected --error / end / heartbeat failed--> backoff
 *   backoff --timer--> connecting;   connecting --failed--> backoff;   any --stop()--> stopped
 *
 * Every connection attempt is a fresh pg-listen subscriber that never reconnects by itself (pg-listen
 * gives up for good after its retryTimeout, and its first connect() is not retried); we reconnect forever
 * with jittered, capped backoff. The heartbeat asks two things, each within a timeout. Does the connection
 * answer? It sends a NOTIFY through the LISTEN connection itself; no answer (and nothing received
 * meanwhile) means a half-open connection, whose socket is destroyed, since ending it can hang. Does LISTEN
 * deliver? Another session (notifyFromElsewhere) notifies a nonce on a channel private to this process,
 * which must come back here. It must be another session: a transaction pooler that happens to hand the
 * LISTEN client the server connection that ran LISTEN delivers that connection's own NOTIFY, while dropping
 * every other session's (PgBouncer logs "got packet 'A' from server when not linked"). A connection that
 * answers but does not deliver is kept (reconnecting through the same pooler cannot help): the `delivery`
 * event says so once, and `undelivered` counts each such heartbeat. Payloads are parsed here
 * (parseViewId), not by pg-listen: a malformed one becomes an `invalid` event and never reaches
 * pg-listen's fatal `error` event.
 */
export class Listener extends EventEmitter<ListenerEvents> {
  private readonly heartbeatChannel = `mvrefresh_hb_${randomBytes(6).toString('hex')}`;
  private current: Connection | undefined;
  private state: 'stopped' | 'connecting' | 'connected' | 'backoff' = 'stopped';
  private attempt = 0;
  private everConnected = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private reconnects = 0;
  /** When the last connected LISTEN connection was lost (for the reconnect's log line). */
  private lostAt: number | undefined;
  private deliveryVerdict: boolean | undefined;
  private readonly limits = {
    ddl: new RateLimit(NOTIFY_WORK_MIN_INTERVAL_MS, (coalesced) => this.emit('ddl', { coalesced })),
    reload: new RateLimit(NOTIFY_WORK_MIN_INTERVAL_MS, (coalesced) => this.emit('reload', { coalesced })),
    schema: new RateLimit(NOTIFY_WORK_MIN_INTERVAL_MS, () => this.emit('schema')),
  };

  constructor(private readonly opts: ListenerOptions) {
    super();
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  get reconnectCount(): number {
    return this.reconnects;
  }

  /**
   * Whether the last conclusive heartbeat saw another session's notification arrive; undefined before the
   * first. Kept across reconnects: a reconnect through the same pooler changes nothing.
   */
  get delivering(): boolean | undefined {
    return this.deliveryVerdict;
  }

  /** Starts connecting; never throws for an unreachable database (it keeps trying). Idempotent. */
  start(): void {
    if (this.state !== 'stopped') return;
    this.state = 'connecting';
    void this.connect();
  }

  /** Stops for good: no reconnect, connection closed (its socket destroyed if closing hangs). Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    clearTimeout(this.retryTimer);
    for (const limit of Object.values(this.limits)) limit.stop();
    const conn = this.current;
    this.current = undefined;
    if (conn) await this.abandon(conn);
  }

  private isStopped(): boolean {
    return this.state === 'stopped';
  }

  private async connect(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    const sockets: Socket[] = [];
    const causes: Error[] = [];
    const noteCause = (err: Error) => {
      if (isFatal(err)) causes.push(err);
    };
    // pg-listen is CommonJS with an ES default export
    const subscriber = pgListen.default(
      {
        connectionString: this.opts.connectionString,
        application_name: AppName.listen,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        keepAlive: true,
        options: startupOptions(this.opts.settings),
        // pg creates its socket through this factory: we keep it to destroy a half-open connection. pg
        // calls it as a method of its Connection, which reports the server's ErrorResponse (57P01 and the
        // like, readable under TLS too) and socket errors: the real cause of a loss, which pg-listen
        // replaces by its generic "Reconnecting notification client ... failed"
        stream: function (this: unknown) {
          const socket = new Socket();
          sockets.push(socket);
          socket.on('error', noteCause);
          if (this instanceof EventEmitter) {
            this.on('errorMessage', noteCause);
            this.on('error', noteCause);
          }
          return socket;
        },
      },
      {
        paranoidChecking: false,
        retryLimit: 1,
        retryTimeout: 1,
        parse: (s: string) => s,
        serialize: (s: unknown) => String(s),
      },
    );
    const conn: Connection = { subscriber, sockets, causes, lastReceivedAt: 0 };
    // pg-listen's own error (under retryLimit 1, always "Re-initializing ... failed") only says that the
    // connection is gone: the cause pg saw first is what ended it
    subscriber.events.on('error', (err) => this.lost(conn, 'connection lost', causes[0] ?? err));
    subscriber.events.on('reconnect', () => this.lost(conn, 'connection lost', causes[0]));
    subscriber.events.on('notification', (n) => {
      if (conn !== this.current) return;
      conn.lastReceivedAt = Date.now();
      const payload = typeof n.payload === 'string' ? n.payload : '';
      if (n.channel === this.heartbeatChannel) {
        const beat = conn.pendingBeat;
        if (beat?.nonce === payload) beat.resolve();
        return;
      }
      if (n.channel !== CHANNEL) return;
      const relid = parseTableNotification(payload);
      if (relid !== undefined) {
        this.emit('table', relid);
        return;
      }
      if (payload === SCHEMA_CHANGED) {
        this.limits.schema.request();
        return;
      }
      if (payload === DDL_CHANGED) {
        this.limits.ddl.request();
        return;
      }
      if (payload === VIEWS_CHANGED) {
        this.limits.reload.request();
        return;
      }
      const viewId = parseViewId(payload);
      if (viewId !== undefined) {
        this.emit('view', viewId);
        return;
      }
      // anyone allowed to NOTIFY may send anything on the channel: never echo it, only its size
      const payloadBytes = Buffer.byteLength(payload);
      this.opts.logger.debug(
        { event: 'notification_invalid', payloadBytes },
        'ignored a malformed notification',
      );
      this.emit('invalid', { payloadBytes });
    });
    this.current = conn;
    try {
      await withTimeout(subscriber.connect(), CONNECT_TIMEOUT_MS + 1000, 'LISTEN connection');
      await withTimeout(
        Promise.resolve(subscriber.listenTo(CHANNEL)),
        this.opts.heartbeatTimeoutMs,
        'LISTEN',
      );
      await withTimeout(
        Promise.resolve(subscriber.listenTo(this.heartbeatChannel)),
        this.opts.heartbeatTimeoutMs,
        'LISTEN',
      );
    } catch (err) {
      this.lost(conn, 'connect failed', causes[0] ?? err);
      return;
    }
    if (conn !== this.current || this.isStopped()) return;
    const reconnect = this.everConnected;
    this.state = 'connected';
    this.everConnected = true;
    if (reconnect) this.reconnects += 1;
    this.attempt = 0;
    const downMs = reconnect && this.lostAt !== undefined ? Date.now() - this.lostAt : undefined;
    this.opts.logger.info(
      {
        event: 'listener_connected',
        reconnect,
        channel: CHANNEL,
        ...(downMs !== undefined ? { downMs } : {}),
      },
      reconnect ? 'LISTEN connection re-established' : 'LISTEN connection established',
    );
    conn.heartbeat = setInterval(() => void this.beat(conn), this.opts.heartbeatIntervalMs);
    this.emit('connected', { reconnect });
  }

  private async beat(conn: Connection): Promise<void> {
    if (conn !== this.current || conn.pendingBeat) return;
    const nonce = randomBytes(8).toString('hex');
    let arrived: () => void = () => undefined;
    const back = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const pending = { nonce, resolve: () => arrived() };
    conn.pendingBeat = pending;
    try {
      // does the connection answer? Its own notification proves nothing about delivery (see above)
      let answered: boolean;
      try {
        answered = await this.settles(conn, conn.subscriber.notify(this.heartbeatChannel, SELF_PAYLOAD));
      } catch (err) {
        this.lost(conn, 'heartbeat failed', err);
        return;
      }
      if (conn !== this.current) return;
      if (!answered) {
        this.lost(
          conn,
          'heartbeat failed',
          `the LISTEN connection did not answer within ${this.opts.heartbeatTimeoutMs} ms`,
        );
        return;
      }
      // does another session's notification reach it? Sent only after the round trip: a pooler delivers
      // what arrives while it happens to link this client to the server connection that ran LISTEN
      try {
        await withTimeout(
          this.opts.notifyFromElsewhere(this.heartbeatChannel, nonce),
          this.opts.heartbeatTimeoutMs,
          'the heartbeat NOTIFY',
        );
      } catch {
        // the other session could not notify (its pool busy, the database away): no verdict
        return;
      }
      if (conn !== this.current) return;
      const delivered = await this.settles(conn, back);
      if (conn !== this.current) return;
      if (!delivered) this.emit('undelivered');
      this.verdict(delivered);
    } finally {
      if (conn.pendingBeat === pending) delete conn.pendingBeat;
    }
  }

  /**
   * Whether p settles within the heartbeat timeout; a timeout is forgiven while the connection keeps
   * delivering notifications: the heartbeat waits behind a backlog (a burst), and dropping the connection
   * would lose the rest of it.
   */
  private async settles(conn: Connection, p: Promise<unknown>): Promise<boolean> {
    for (;;) {
      try {
        await withTimeout(p, this.opts.heartbeatTimeoutMs, 'LISTEN heartbeat');
        return true;
      } catch (err) {
        if (!(err instanceof TimeoutError)) throw err;
        if (conn === this.current && Date.now() - conn.lastReceivedAt < this.opts.heartbeatTimeoutMs)
          continue;
        return false;
      }
    }
  }

  private verdict(delivering: boolean): void {
    if (this.deliveryVerdict === delivering) return;
    const first = this.deliveryVerdict === undefined;
    this.deliveryVerdict = delivering;
    this.emit('delivery', { delivering, first });
  }

  /**
   * The connection is unusable: drop it and schedule the next attempt. Only the current one counts. The
   * log line names what happened and its cause (`err`, with `sqlstate` when the server said why).
   */
  private lost(conn: Connection, what: string, cause?: unknown): void {
    if (conn !== this.current) return;
    const reason = scrubSecret(
      cause === undefined ? `${what}: the server closed the connection` : `${what}: ${describeError(cause)}`,
      this.opts.connectionString,
    );
    const sqlstate = isPgError(cause) ? cause.code : undefined;
    this.current = undefined;
    const wasConnected = this.state === 'connected';
    void this.abandon(conn);
    if (this.state === 'stopped') return;
    this.attempt += 1;
    const delay = backoffDelay(this.attempt, RECONNECT_BASE_MS, this.opts.reconnectMaxDelayMs);
    this.state = 'backoff';
    if (wasConnected) {
      this.lostAt = Date.now();
      this.emit('disconnected', { reason });
    }
    // one line per attempt: an outage of an hour logs at most one line per capped backoff period
    this.opts.logger.warn(
      {
        event: 'listener_disconnected',
        reason,
        ...(sqlstate ? { sqlstate } : {}),
        attempt: this.attempt,
        retryInMs: delay,
      },
      wasConnected ? 'LISTEN connection lost; reconnecting' : 'LISTEN connection not made; trying again',
    );
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private async abandon(conn: Connection): Promise<void> {
    clearInterval(conn.heartbeat);
    conn.pendingBeat = undefined;
    const { subscriber } = conn;
    for (const event of ['error', 'reconnect', 'notification', 'connected'] as const)
      subscriber.events.removeAllListeners(event);
    subscriber.events.on('error', () => undefined);
    // pg-listen may still be in its single internal reconnect attempt: if it succeeds, close that too
    subscriber.events.on('connected', () => void subscriber.close().catch(() => undefined));
    try {
      await withTimeout(subscriber.close(), CLOSE_TIMEOUT_MS, 'closing the LISTEN connection');
    } catch {
      // a half-open connection: ending it waits for a peer that is gone
    }
    for (const socket of conn.sockets) socket.destroy();
  }
}
