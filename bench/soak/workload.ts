import pg from 'pg';

/** Tables the views read; every write updates one row of one of them, so their sizes stay put. */
export const TABLES = 5;
export const ROWS = 10_000;
const WRITERS = 4;

export const tableName = (i: number) => `events_${i}`;
export const viewName = (j: number) => `soak_view_${j}`;

/** View j: a small aggregate of table j % TABLES (10 + j groups), every third one over a join of two tables. */
export function viewQuery(j: number): string {
  const t = tableName(j % TABLES);
  if (j % 3 === 2) {
    const u = tableName((j + 1) % TABLES);
    return `SELECT a.k % ${10 + j} AS g, sum(a.v + b.v) AS total, count(*) AS n
              FROM ${t} a JOIN ${u} b ON b.id = a.id GROUP BY 1`;
  }
  return `SELECT k % ${10 + j} AS g, sum(v) AS total, count(*) AS n FROM ${t} GROUP BY 1`;
}

export function schemaSql(views: number): string {
  const parts: string[] = [];
  for (let i = 0; i < TABLES; i += 1)
    parts.push(`CREATE TABLE ${tableName(i)} (id int PRIMARY KEY, k int NOT NULL, v bigint NOT NULL);
      INSERT INTO ${tableName(i)} SELECT g, g % 97, 0 FROM generate_series(1, ${ROWS}) g;`);
  for (let j = 0; j < views; j += 1)
    parts.push(`CREATE MATERIALIZED VIEW ${viewName(j)} AS ${viewQuery(j)};
      CREATE UNIQUE INDEX ON ${viewName(j)} (g);`);
  return parts.join('\n');
}

/**
 * Writers at `tps` transactions per second in all, on WRITERS connections, each transaction an UPDATE of
 * one random row; paced against the clock so that a slow moment is caught up, not lost.
 */
export class Writers {
  private stopped = false;
  private readonly done: Promise<number>[] = [];

  constructor(
    private readonly url: string,
    private readonly tps: number,
  ) {}

  start(): void {
    for (let w = 0; w < WRITERS; w += 1) this.done.push(this.loop(this.tps / WRITERS));
  }

  private async loop(rate: number): Promise<number> {
    const c = new pg.Client({ connectionString: this.url, application_name: 'soak:writer' });
    c.on('error', () => undefined);
    await c.connect();
    const t0 = performance.now();
    let n = 0;
    try {
      while (!this.stopped) {
        const table = tableName(Math.floor(Math.random() * TABLES));
        await c.query(`UPDATE ${table} SET v = v + 1 WHERE id = $1`, [1 + Math.floor(Math.random() * ROWS)]);
        n += 1;
        const ahead = t0 + (n * 1000) / rate - performance.now();
        if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
    return n;
  }

  /** Stops them; the number of transactions written. */
  async stop(): Promise<number> {
    this.stopped = true;
    return (await Promise.all(this.done)).reduce((a, b) => a + b, 0);
  }
}
