import type pg from 'pg';
import type { Logger } from '../logger.js';
import { AppName, connectClient, prepareAdminSession } from '../db/connect.js';
import { describeError } from '../db/errors.js';
import { sql } from '../db/sql.js';
import { REPLACE_CHANNEL } from '../db/protocol.js';
import { scrubSecret } from '../db/url.js';
import { execute, type Step } from './executor.js';
import { replaceSql } from './sql.js';
import { claim, cleanupOrphans } from './requests.js';
import { SerialTask } from '../daemon/lib/serial-task.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ReplaceWorkerOptions {
  databaseUrl: string;
  /** Where LISTEN and the executor's session go (a direct URL when databaseUrl is a transaction pooler's). */
  listenUrl: string;
  logger: Logger;
  /** How often it looks for requests whose notification it missed, and for abandoned ones. */
  intervalMs: number;
  /**
   * Whether listenUrl reaches a session of its own (the LISTEN connection's heartbeat saw notifications
   * delivered, which a transaction pooler does not): checked before every pass.
   */
  sessionUsable: () => boolean;
  /** Test hook: the executor waits at the start of this step until the worker is stopped. */
  pauseAt?: Step | undefined;
}

/**
 * The daemon's side of `request_replace()`: on each notification of REPLACE_CHANNEL and at every interval,
 * claims the oldest pending request (replicas race for it; exactly one wins, requests.ts) and carries it
 * out on a connection of its own, one request at a time per process. Stopping cancels the running
 * statement: the new version is dropped and the request goes back to pending for another replica.
 */
export class ReplaceWorker {
  private listenClient: pg.Client | undefined;
  private readonly task = new SerialTask<'look', void>(
    () =>
      this.pass().catch((err: unknown) =>
        this.opts.logger.warn(
          { event: 'replace_error', err: scrubSecret(describeError(err), this.opts.databaseUrl) },
          'replace requests could not be read',
        ),
      ),
    () => ({ reason: 'look', afterMs: this.opts.intervalMs }),
  );
  private stopped = false;
  private executorPid: number | undefined;

  constructor(private readonly opts: ReplaceWorkerOptions) {}

  start(): void {
    if (this.task.start()) this.kick();
  }

  /** Looks for work now (or once more after the current pass). */
  kick(): void {
    this.task.request('look');
  }

  private async ensureListening(): Promise<void> {
    if (this.listenClient) return;
    const client = await connectClient(this.opts.listenUrl, AppName.replace);
    client.on('notification', () => this.kick());
    client.on('error', () => {
      if (this.listenClient === client) this.listenClient = undefined;
      void client.end().catch(() => undefined);
    });
    await client.query(sql.listen(REPLACE_CHANNEL));
    this.listenClient = client;
  }

  private async pass(): Promise<void> {
    if (!this.opts.sessionUsable()) return;
    await this.ensureListening().catch(() => undefined);
    // a session of its own, never through a transaction pooler: the claim is a session advisory lock and
    // the build spans transactions (listenUrl is the daemon's direct or session-mode URL)
    const client = await connectClient(this.opts.listenUrl, AppName.replace);
    try {
      await prepareAdminSession(client);
      await client.query(replaceSql.executorSession);
      this.executorPid = (client as pg.Client & { processID?: number }).processID;
      for (const o of await cleanupOrphans(client))
        this.opts.logger.warn(
          { event: 'replace_abandoned', view: `${o.view_schema}.${o.view_name}`, request: o.id },
          'dropped the half-built version of an interrupted replace',
        );
      while (!this.stopped) {
        const request = await claim(client, { origins: ['sql'] }, `daemon:${process.pid}`);
        if (!request) break;
        const view = `${request.view_schema}.${request.view_name}`;
        this.opts.logger.info({ event: 'replace_started', view, request: request.id }, 'replacing a view');
        const outcome = await execute(client, request, {
          stopping: () => this.stopped,
          atStep: async (step) => {
            while (step === this.opts.pauseAt && !this.stopped) await sleep(50);
            if (this.stopped) throw new Error('the daemon is stopping');
          },
        });
        const fields = {
          event: 'replace_finished',
          view,
          request: request.id,
          durationMs: outcome.durationMs,
        };
        if (outcome.status === 'failed')
          this.opts.logger.error({ ...fields, outcome: 'failed', err: outcome.error }, 'replace failed');
        else this.opts.logger.info({ ...fields, outcome: outcome.status }, 'replace finished');
      }
    } finally {
      this.executorPid = undefined;
      await client.end().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const pid = this.executorPid;
    if (pid !== undefined && this.listenClient)
      await this.listenClient.query('SELECT pg_catalog.pg_cancel_backend($1)', [pid]).catch(() => undefined);
    await this.task.stop();
    await this.listenClient?.end().catch(() => undefined);
    this.listenClient = undefined;
  }
}
