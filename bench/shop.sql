-- The dirty-flag article's shop as published (the article is not part of this repository), plus the seed
-- of the benchmarks. write-path.ts seeds the orders, then refreshes the view.
CREATE TABLE products (product_id int PRIMARY KEY, name text, price numeric(10, 2));
CREATE TABLE customers (customer_id int PRIMARY KEY, email text);
CREATE TABLE orders (
order_id int PRIMARY KEY,
customer_id int REFERENCES customers(customer_id),
order_date date
);
CREATE TABLE order_items (
order_id int REFERENCES orders(order_id),
product_id int REFERENCES products(product_id),
quantity int,
PRIMARY KEY (order_id, product_id)
);
CREATE MATERIALIZED VIEW public.monthly_product_sales AS
SELECT
p.product_id,
p.name AS product_name,
date_trunc('month', o.order_date)::date AS sales_month,
SUM(oi.quantity) AS total_quantity_sold,
SUM(oi.quantity * p.price) AS total_revenue
FROM products p
JOIN order_items oi ON p.product_id = oi.product_id
JOIN orders o ON oi.order_id = o.order_id
GROUP BY p.product_id, p.name, sales_month
ORDER BY sales_month, total_revenue DESC;
CREATE UNIQUE INDEX idx_monthly_product_sales_unique ON monthly_product_sales (sales_month, product_id);

-- the seed: 1000 products, 1000 customers; order ids come from a sequence, so no two orders collide
INSERT INTO products SELECT g, 'product ' || g, 1 + g % 50 FROM generate_series(1, 1000) g;
INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 1000) g;
CREATE SEQUENCE order_ids;
