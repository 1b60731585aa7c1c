-- The quick start's example (demo/shop.ts): a shop with a materialized view of monthly sales per product.
-- Idempotent: `docker compose up` runs it at every start.
CREATE TABLE IF NOT EXISTS products (product_id int PRIMARY KEY, name text, price numeric(10, 2));
CREATE TABLE IF NOT EXISTS customers (customer_id int PRIMARY KEY, email text);
CREATE TABLE IF NOT EXISTS orders (order_id int PRIMARY KEY, customer_id int REFERENCES customers (customer_id), order_date date);
CREATE TABLE IF NOT EXISTS order_items (
  order_id int REFERENCES orders (order_id),
  product_id int REFERENCES products (product_id),
  quantity int,
  PRIMARY KEY (order_id, product_id)
);
CREATE SEQUENCE IF NOT EXISTS order_ids;
INSERT INTO products SELECT g, 'product ' || g, 5 + g % 40 FROM generate_series(1, 50) g ON CONFLICT DO NOTHING;
INSERT INTO customers SELECT g, 'customer' || g || '@example.com' FROM generate_series(1, 100) g ON CONFLICT DO NOTHING;
CREATE MATERIALIZED VIEW IF NOT EXISTS public.monthly_product_sales AS
SELECT p.product_id, p.name AS product_name, date_trunc('month', o.order_date)::date AS sales_month,
       SUM(oi.quantity) AS total_quantity_sold, SUM(oi.quantity * p.price) AS total_revenue
  FROM products p JOIN order_items oi ON p.product_id = oi.product_id JOIN orders o ON oi.order_id = o.order_id
 GROUP BY p.product_id, p.name, sales_month
 ORDER BY sales_month, total_revenue DESC;
-- REFRESH ... CONCURRENTLY needs a unique index on plain columns
CREATE UNIQUE INDEX IF NOT EXISTS idx_monthly_product_sales_unique ON monthly_product_sales (sales_month, product_id);
