/**
 * The dirty-flag article's shop, its schema as published (the article is not part of this repository):
 * products, customers, orders, order_items and the monthly_product_sales view with its unique index, seeded
 * with products and customers. Used by the demo, the tests and the benchmarks, so that all of them
 * exercise the same example.
 */
export function shopSchema(seed: { products: number; customers: number }): string {
  return `
CREATE TABLE products (product_id int PRIMARY KEY, name text, price numeric(10, 2));
CREATE TABLE customers (customer_id int PRIMARY KEY, email text);
CREATE TABLE orders (order_id int PRIMARY KEY, customer_id int REFERENCES customers (customer_id), order_date date);
CREATE TABLE order_items (
  order_id int REFERENCES orders (order_id),
  product_id int REFERENCES products (product_id),
  quantity int,
  PRIMARY KEY (order_id, product_id)
);
CREATE MATERIALIZED VIEW public.monthly_product_sales AS
SELECT p.product_id, p.name AS product_name, date_trunc('month', o.order_date)::date AS sales_month,
       SUM(oi.quantity) AS total_quantity_sold, SUM(oi.quantity * p.price) AS total_revenue
  FROM products p JOIN order_items oi ON p.product_id = oi.product_id JOIN orders o ON oi.order_id = o.order_id
 GROUP BY p.product_id, p.name, sales_month
 ORDER BY sales_month, total_revenue DESC;
CREATE UNIQUE INDEX idx_monthly_product_sales_unique ON monthly_product_sales (sales_month, product_id);
INSERT INTO products SELECT g, 'product ' || g, 5 + g % 40 FROM generate_series(1, ${Math.trunc(seed.products)}) g;
INSERT INTO customers SELECT g, 'customer' || g || '@example.com' FROM generate_series(1, ${Math.trunc(seed.customers)}) g;
CREATE SEQUENCE order_ids;
`;
}

/** The view's defining query (without ORDER BY), to check that the view equals it. */
export const SHOP_VIEW_QUERY = `
SELECT p.product_id, p.name AS product_name, date_trunc('month', o.order_date)::date AS sales_month,
       SUM(oi.quantity) AS total_quantity_sold, SUM(oi.quantity * p.price) AS total_revenue
  FROM products p JOIN order_items oi ON p.product_id = oi.product_id JOIN orders o ON oi.order_id = o.order_id
 GROUP BY p.product_id, p.name, sales_month`;

/** One order with up to $1 distinct items of products 1..$2 by customers 1..$3, in one statement. */
export const INSERT_ORDER_WITH_ITEMS = `
WITH o AS (INSERT INTO orders
           VALUES (nextval('order_ids'), 1 + (random() * ($3::int - 1))::int, date '2024-01-01' + (random() * 300)::int)
           RETURNING order_id)
INSERT INTO order_items
SELECT o.order_id, p, 1 + (random() * 4)::int
  FROM o, (SELECT DISTINCT 1 + (random() * ($2::int - 1))::int AS p FROM generate_series(1, $1::int)) items`;
