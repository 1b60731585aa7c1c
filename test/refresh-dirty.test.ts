import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.js';
import { INSERT_ORDER, SHOP_QUERY, SHOP_SQL, viewMatches } from './support/shop.js';

const db = useTestDatabase('refresh_dirty');

beforeAll(async () => {
  await db.sql.query(SHOP_SQL);
  await db.sql.query(`
    CREATE MATERIALIZED VIEW product_totals AS
      SELECT product_id, sum(total_quantity_sold)::bigint AS quantity FROM monthly_product_sales GROUP BY product_id;
    CREATE UNIQUE INDEX ON product_totals (product_id);
    CREATE MATERIALIZED VIEW grand_total AS SELECT 1 AS one, sum(quantity)::bigint AS quantity FROM product_totals;
    CREATE UNIQUE INDEX ON grand_total (one);`);
  await db.sql.query("SELECT mvrefresh.watch('grand_total', p_with_dependencies => true)");
});

describe('CALL mvrefresh.refresh_dirty()', () => {
  it('refreshes every dirty view of a three-level chain, upstream first, in one call', async () => {
    for (let i = 0; i < 20; i += 1) await db.exec(INSERT_ORDER);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    expect(await viewMatches(db.sql, 'monthly_product_sales', SHOP_QUERY)).toBe(true);
    expect(
      await viewMatches(
        db.sql,
        'product_totals',
        `SELECT product_id, sum(total_quantity_sold)::bigint AS quantity FROM (${SHOP_QUERY}) s GROUP BY product_id`,
      ),
    ).toBe(true);
    expect(
      await viewMatches(
        db.sql,
        'grand_total',
        'SELECT 1 AS one, sum(quantity)::bigint AS quantity FROM order_items',
      ),
    ).toBe(true);
    const { rows } = await db.sql.query<{ dirty: boolean; last_outcome: string }>(
      'SELECT dirty, last_outcome FROM mvrefresh.status ORDER BY depth',
    );
    expect(rows).toEqual([
      { dirty: false, last_outcome: 'refreshed' },
      { dirty: false, last_outcome: 'refreshed' },
      { dirty: false, last_outcome: 'refreshed' },
    ]);
  });

  it('does nothing when nothing is dirty', async () => {
    const before = await db.sql.query('SELECT id, last_refreshed_at FROM mvrefresh.view_state ORDER BY id');
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const after = await db.sql.query('SELECT id, last_refreshed_at FROM mvrefresh.view_state ORDER BY id');
    expect(after.rows).toEqual(before.rows);
  });

  it('records a failure, keeps the view dirty, and skips it while it backs off', async () => {
    await db.sql.query('DROP INDEX monthly_product_sales_sales_month_product_id_idx').catch(() => undefined);
    await db.sql.query('DROP INDEX idx_monthly_product_sales_unique');
    await db.exec(INSERT_ORDER);
    await db.sql.query('CALL mvrefresh.refresh_dirty()');
    const { rows } = await db.sql.query<{ dirty: boolean; last_sqlstate: string; next_attempt_at: Date }>(
      "SELECT dirty, last_sqlstate, next_attempt_at FROM mvrefresh.status WHERE view = 'public.monthly_product_sales'",
    );
    expect(rows[0]).toMatchObject({ dirty: true, last_sqlstate: '55000' });
    expect(rows[0]!.next_attempt_at.getTime()).toBeGreaterThan(Date.now());
    const due = await db.sql.query('SELECT view_id FROM mvrefresh.due_views()');
    expect(due.rows).toEqual([]);
  });
});
