/**
 * The data, views and writers of bench:incremental (issue 27's Goals): posts of ~200 communities,
 * comments on them, four materialized views over comments, and writers mixing inserts, score updates and
 * deletes, each statement its own transaction.
 */
import pg from 'pg';
import { numberEnv } from '../support/report.js';

export const POSTS = numberEnv('BENCH_POSTS', 500_000);
export const COMMENTS = numberEnv('BENCH_COMMENTS', 5_000_000);
export const COMMUNITIES = 200;
/** Authors of comments: one per ten posts (50 000 at the default scale), so that posts have repeat commenters. */
export const AUTHORS = Math.max(100, Math.round(POSTS / 10));
/** Posts and comments are spread over this many days before the bench's own writes (about half a year). */
const SPREAD_DAYS = 182;
/** Scores run from SCORE_MIN to SCORE_MIN + 255: a few percent of comments pass top_comments' > 100. */
const SCORE_MIN = -100;
const SCORE_SPAN = 256;

/**
 * The key columns of comments' index on post_id (BENCH_COMMENTS_INDEX, comma-separated): by default
 * `post_id,author_id`, the index `watch --incremental` asks for so that post_commenters' count(DISTINCT
 * author_id) is kept by probes of it (docs/operations.md); `post_id` alone makes it recomputed by key (the
 * runs before 2026-12-07).
 */
export const COMMENTS_INDEX = parseCommentsIndex(process.env['BENCH_COMMENTS_INDEX'] ?? 'post_id,author_id');

function parseCommentsIndex(value: string): readonly string[] {
  const columns = value.split(',').map((c) => c.trim());
  if (
    columns[0] !== 'post_id' ||
    columns.some((c) => !['post_id', 'author_id', 'score', 'created_at'].includes(c))
  )
    throw new Error(
      `BENCH_COMMENTS_INDEX: ${JSON.stringify(value)} is not post_id followed by columns of comments (author_id, score, created_at)`,
    );
  return columns;
}

/** The four views of the issue: definition (the SQL text the bench creates them with) and unique key. */
export interface ViewSpec {
  name: string;
  query: string;
  key: string[];
}

export const VIEWS: readonly ViewSpec[] = [
  {
    // many small groups
    name: 'post_stats',
    query: `SELECT c.post_id, count(*) AS comments, max(c.created_at) AS last_comment_at, sum(c.score) AS score
  FROM public.comments c GROUP BY c.post_id`,
    key: ['post_id'],
  },
  {
    // few large groups; the day in UTC, so that the key does not depend on the session's TimeZone
    name: 'community_day',
    query: `SELECT p.community_id, date_trunc('day', c.created_at AT TIME ZONE 'UTC') AS day, count(*) AS comments, sum(c.score) AS score
  FROM public.comments c JOIN public.posts p ON p.id = c.post_id
 GROUP BY p.community_id, date_trunc('day', c.created_at AT TIME ZONE 'UTC')`,
    key: ['community_id', 'day'],
  },
  {
    // a filter over a source keyed by its primary key
    name: 'top_comments',
    query: `SELECT c.id, c.post_id, c.score FROM public.comments c WHERE c.score > 100`,
    key: ['id'],
  },
  {
    // count(DISTINCT): recompute of the affected groups only
    name: 'post_commenters',
    query: `SELECT c.post_id, count(DISTINCT c.author_id) AS commenters FROM public.comments c GROUP BY c.post_id`,
    key: ['post_id'],
  },
];

/** A key expression of the small GROUP BY views of the write-path part: column name and expression. */
const SMALL_KEYS: readonly [string, string][] = [
  ['bucket', 'c.score / 50'],
  ['author_group', 'c.author_id % 16'],
  ['day', "date_trunc('day', c.created_at AT TIME ZONE 'UTC')"],
  ['post_group', 'c.post_id % 64'],
];
/** Aggregates of those views; `i` makes each view's differ from the others'. */
const SMALL_AGGREGATES: readonly ((i: number) => string)[] = [
  (i) => `count(*) AS n, sum(c.score * ${i}) AS s`,
  (i) => `sum(abs(c.score) + ${i}) AS s, avg(c.score) AS mean`,
  (i) => `count(*) FILTER (WHERE c.score > ${i * 5}) AS n`,
  (i) => `min(c.score) AS lo, max(c.score + ${i}) AS hi`,
  (i) => `sum(c.score) FILTER (WHERE c.score < ${-i}) AS negative, max(c.created_at) AS last_at`,
];

/**
 * Twenty small GROUP BY views over comments (few groups each, different aggregates): the capture cost of
 * many incremental views reading one table. Every key expression with every aggregate list, once.
 */
export const SMALL_VIEWS: readonly ViewSpec[] = SMALL_AGGREGATES.flatMap((aggregate, a) =>
  SMALL_KEYS.map(([column, expression], k): ViewSpec => {
    const i = a * SMALL_KEYS.length + k + 1;
    return {
      name: `comment_agg_${String(i).padStart(2, '0')}`,
      query: `SELECT ${expression} AS ${column}, ${aggregate(i)} FROM public.comments c GROUP BY ${expression}`,
      key: [column],
    };
  }),
);

/**
 * The views' fillfactor (BENCH_VIEW_FILLFACTOR, 10-100), a storage parameter that `watch --incremental`
 * keeps on the table; unset by default, as PostgreSQL creates a materialized view (100).
 */
const VIEW_FILLFACTOR = process.env['BENCH_VIEW_FILLFACTOR']
  ? numberEnv('BENCH_VIEW_FILLFACTOR', 100)
  : undefined;
if (
  VIEW_FILLFACTOR !== undefined &&
  !(Number.isInteger(VIEW_FILLFACTOR) && VIEW_FILLFACTOR >= 10 && VIEW_FILLFACTOR <= 100)
)
  throw new Error(`BENCH_VIEW_FILLFACTOR: ${VIEW_FILLFACTOR} is not an integer from 10 to 100`);

/** `CREATE MATERIALIZED VIEW` of a view and its unique index (REFRESH CONCURRENTLY needs one). */
export function createViewSql(v: ViewSpec): string {
  const name = pg.escapeIdentifier(v.name);
  const storage = VIEW_FILLFACTOR === undefined ? '' : ` WITH (fillfactor = ${VIEW_FILLFACTOR})`;
  return `CREATE MATERIALIZED VIEW public.${name}${storage} AS ${v.query};
CREATE UNIQUE INDEX ${pg.escapeIdentifier(`${v.name}_key`)} ON public.${name} (${v.key.map((k) => pg.escapeIdentifier(k)).join(', ')});`;
}

/** The tables and their rows (as docs/design/incremental/load.sql, at the bench's scale). */
export function schemaSql(): string {
  return `SET max_parallel_workers_per_gather = 0;
CREATE TABLE public.posts (id bigint PRIMARY KEY, community_id int NOT NULL, author_id int NOT NULL,
  created_at timestamptz NOT NULL, title text);
INSERT INTO public.posts
SELECT g, 1 + g % ${COMMUNITIES}, 1 + (g::bigint * 7919 % ${AUTHORS})::int,
       timestamptz '2026-01-01' + g * (interval '${SPREAD_DAYS} days' / ${POSTS}), 'post ' || g
  FROM generate_series(1, ${POSTS}) g;
CREATE TABLE public.comments (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, post_id bigint NOT NULL,
  author_id int NOT NULL, score int NOT NULL, created_at timestamptz NOT NULL, body text);
INSERT INTO public.comments (id, post_id, author_id, score, created_at, body)
SELECT g, 1 + (hashint8(g) & 2147483647) % ${POSTS}, 1 + (hashint8(g + 1) & 2147483647) % ${AUTHORS},
       (hashint8(g + 2) & ${SCORE_SPAN - 1})::int + ${SCORE_MIN},
       timestamptz '2026-01-01' + g * (interval '${SPREAD_DAYS} days' / ${COMMENTS}), 'x'
  FROM generate_series(1, ${COMMENTS}) g;
SELECT setval(pg_get_serial_sequence('public.comments', 'id'), ${COMMENTS});
CREATE INDEX comments_post_id ON public.comments (${COMMENTS_INDEX.join(', ')});
RESET max_parallel_workers_per_gather;`;
}

/** `COPY ... TO` of `rows` new comments into a server-side file, for the COPY measurements. */
export function copyFileSql(file: string, rows: number): string {
  return `COPY (SELECT 1 + (hashint8(g) & 2147483647) % ${POSTS}, 1 + (hashint8(g + 1) & 2147483647) % ${AUTHORS},
  (hashint8(g + 2) & ${SCORE_SPAN - 1})::int + ${SCORE_MIN}, now(), 'copied' FROM generate_series(1, ${rows}) g)
  TO ${pg.escapeLiteral(file)} (FORMAT csv)`;
}

export const COPY_COLUMNS = '(post_id, author_id, score, created_at, body)';

/**
 * comments_plain: a twin of comments (same columns, indexes and rows) that no view reads, so that the write
 * path can pair each round on comments with one on a table without triggers, whatever comments has.
 */
export const PLAIN_TWIN_SQL = `CREATE TABLE public.comments_plain (LIKE public.comments INCLUDING ALL);
INSERT INTO public.comments_plain SELECT * FROM public.comments;
SELECT setval(pg_get_serial_sequence('public.comments_plain', 'id'), (SELECT max(id) FROM public.comments_plain));`;

const randomInt = (n: number) => Math.floor(Math.random() * n);
const randomScore = () => SCORE_MIN + randomInt(SCORE_SPAN);

/** The tables writers write: comments, or its twin without triggers (the write path's paired rounds). */
export type Target = 'comments' | 'comments_plain';

/** A writer's statements on `table`; named, so that each connection prepares them once. */
function statements(table: Target) {
  const t = `public.${pg.escapeIdentifier(table)}`;
  return {
    insert: {
      name: `bench_insert_${table}`,
      text: `INSERT INTO ${t} (post_id, author_id, score, created_at, body) VALUES ($1, $2, $3, now(), 'w') RETURNING id`,
    },
    update: { name: `bench_update_${table}`, text: `UPDATE ${t} SET score = $2 WHERE id = $1` },
    delete: { name: `bench_delete_${table}`, text: `DELETE FROM ${t} WHERE id = $1` },
  } as const;
}
export type Op = keyof ReturnType<typeof statements>;

/** Shares of each statement: the issue's 80% inserts, 15% score updates, 5% deletes; or inserts only. */
export type Mix = 'mixed' | 'inserts';
const MIX_SHARES: Record<Mix, readonly [Op, number][]> = {
  mixed: [
    ['insert', 0.8],
    ['update', 0.15],
    ['delete', 0.05],
  ],
  inserts: [['insert', 1]],
};

function pick(mix: Mix): Op {
  let r = Math.random();
  for (const [op, share] of MIX_SHARES[mix]) {
    r -= share;
    if (r < 0) return op;
  }
  return 'insert';
}

export interface LoadCounts {
  insert: number;
  update: number;
  delete: number;
  errors: number;
}

/** A paced writer that falls behind its schedule catches up at most this much of it (a burst), not all. */
const MAX_PACING_LAG_MS = 1000;

/**
 * `clients` connections each running one statement after another (each its own transaction) until stop():
 * with no pause, or at `rate` statements per second in all (0: no pause), on comments or on `table`. Statements that complete while
 * counting is on are counted, by kind.
 */
export class WriterLoad {
  private running = true;
  private counting = false;
  private countingSince = 0;
  private maxId: number;
  private readonly loops: Promise<void>[] = [];
  readonly counts: LoadCounts = { insert: 0, update: 0, delete: 0, errors: 0 };
  readonly errors: string[] = [];
  /** Seconds counting was on. */
  seconds = 0;

  private readonly statements: ReturnType<typeof statements>;

  constructor(
    private readonly url: string,
    private readonly clients: number,
    private readonly mix: Mix,
    opts: { firstMaxId: number; rate?: number; table?: Target },
  ) {
    this.maxId = opts.firstMaxId;
    this.rate = opts.rate ?? 0;
    this.statements = statements(opts.table ?? 'comments');
  }

  private readonly rate: number;

  async start(): Promise<void> {
    const clients = await Promise.all(
      Array.from({ length: this.clients }, async (_, i) => {
        const c = new pg.Client({ connectionString: this.url, application_name: `bench:writer:${i}` });
        c.on('error', () => undefined);
        await c.connect();
        return c;
      }),
    );
    for (const c of clients) this.loops.push(this.loop(c));
  }

  private async loop(c: pg.Client): Promise<void> {
    const intervalMs = this.rate > 0 ? (1000 * this.clients) / this.rate : 0;
    let next = performance.now();
    while (this.running) {
      if (intervalMs > 0) {
        next = Math.max(next + intervalMs, performance.now() - MAX_PACING_LAG_MS);
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const op = pick(this.mix);
      try {
        if (op === 'insert') {
          const { rows } = await c.query<{ id: string }>({
            ...this.statements.insert,
            values: [1 + randomInt(POSTS), 1 + randomInt(AUTHORS), randomScore()],
          });
          this.maxId = Math.max(this.maxId, Number(rows[0]?.id ?? 0));
        } else {
          const id = 1 + randomInt(this.maxId);
          await c.query({
            ...this.statements[op],
            values: op === 'update' ? [id, randomScore()] : [id],
          });
        }
        if (this.counting) this.counts[op] += 1;
      } catch (err) {
        if (this.counting) this.counts.errors += 1;
        if (this.errors.length < 5) this.errors.push(`${op}: ${(err as Error).message}`);
      }
    }
    await c.end().catch(() => undefined);
  }

  /** Starts counting completed statements. */
  count(): void {
    this.counting = true;
    this.countingSince = performance.now();
  }

  /** Stops counting; the writers go on until stop(). */
  endCount(): void {
    if (!this.counting) return;
    this.counting = false;
    this.seconds = (performance.now() - this.countingSince) / 1000;
  }

  /** Successful statements per second while counting. */
  get tps(): number {
    const { insert, update, delete: del } = this.counts;
    return (insert + update + del) / this.seconds;
  }

  async stop(): Promise<void> {
    this.endCount();
    this.running = false;
    await Promise.all(this.loops);
  }
}
