import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { judgeSchema, readSchemaState, type SchemaState } from '../../db/compat.js';

export interface SchemaCheckEvents {
  /** The schema moved past what this build understands: stop taking work and exit. Emitted once. */
  incompatible: [info: { message: string; state: SchemaState; knownVersion: number }];
}

export interface SchemaCheckOptions {
  pool: pg.Pool;
  logger: Logger;
  /** The newest schema version this build knows (its newest migration). */
  knownVersion: number;
}

/**
 * Notices, while the daemon runs, that `migrate` applied a schema this build cannot work with (a migration
 * marked as breaking older daemons). Checked when migrate's notification arrives, at every sweep, and when
 * a refresh fails in a way a schema change explains (an undefined function or column), so a daemon stops
 * cleanly instead of recording failures on every view.
 */
export class SchemaCheck extends EventEmitter<SchemaCheckEvents> {
  private incompatible = false;
  private checking: Promise<boolean> | undefined;

  constructor(private readonly opts: SchemaCheckOptions) {
    super();
  }

  /** True while the schema is one this build works with (also when the check itself failed). */
  get compatible(): boolean {
    return !this.incompatible;
  }

  /** Reads the schema's version; concurrent calls share one query. */
  check(): Promise<boolean> {
    this.checking ??= this.run().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async run(): Promise<boolean> {
    if (this.incompatible) return false;
    let state: SchemaState;
    try {
      state = await readSchemaState(this.opts.pool);
    } catch {
      // the database is away: the sweep (or the refresh) that asked reports it, once per distinct error;
      // compatibility is checked again on the next turn
      return true;
    }
    const verdict = judgeSchema(state, this.opts.knownVersion);
    if (verdict.ok || verdict.reason !== 'incompatible') return true;
    this.incompatible = true;
    this.emit('incompatible', { message: verdict.message, state, knownVersion: this.opts.knownVersion });
    return false;
  }
}
