import type pg from 'pg';
import { SHOP_VIEW_QUERY, shopSchema } from '../../demo/shop.js';

/** The dirty-flag article's shop with a little seed data (demo/shop.ts). */
export const SHOP_SQL = shopSchema({ products: 20, customers: 20 });

export const SHOP_QUERY = SHOP_VIEW_QUERY;

/** One order with one item, in one transaction. */
export const INSERT_ORDER = `
WITH o AS (INSERT INTO orders VALUES (nextval('order_ids'), 1 + (random() * 19)::int, date '2024-01-01' + (random() * 300)::int)
           RETURNING order_id)
INSERT INTO order_items SELECT order_id, 1 + (random() * 19)::int, 1 + (random() * 5)::int FROM o`;

/** True when the view's rows equal its defining query's (both directions of EXCEPT are empty). */
export async function viewMatches(client: pg.ClientBase, view: string, query: string): Promise<boolean> {
  const { rows } = await client.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM ((TABLE ${view}) EXCEPT ALL (${query})) a)
          + (SELECT count(*) FROM ((${query}) EXCEPT ALL (TABLE ${view})) b) AS n`,
  );
  return rows[0]?.n === '0';
}

/** The shop's materialized view, which watchShop watches. */
export const SHOP_VIEW = 'monthly_product_sales';

/** Creates the shop in the database of `client` and watches its view. */
export async function watchShop(client: pg.ClientBase): Promise<void> {
  await client.query(SHOP_SQL);
  await client.query('SELECT mvrefresh.watch($1)', [SHOP_VIEW]);
}
