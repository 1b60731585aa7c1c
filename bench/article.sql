-- The dirty-flag article's design as published (the article is not in this repository): its control
-- table, its trigger function, its refresh procedure, its registration and its three statement triggers.
CREATE TABLE public.materialized_view_state (
view_name text PRIMARY KEY,
is_dirty boolean NOT NULL DEFAULT false,
last_refreshed_at timestamptz,
last_dirtied_at timestamptz
);

CREATE OR REPLACE FUNCTION public.mark_materialized_view_as_dirty()
RETURNS TRIGGER AS $$
DECLARE
view_name_to_update text := TG_ARGV[0];
BEGIN
INSERT INTO public.materialized_view_state (view_name, is_dirty, last_dirtied_at)
VALUES (view_name_to_update, true, now())
ON CONFLICT (view_name)
DO UPDATE SET
is_dirty = true,
last_dirtied_at = now();
RETURN NULL; -- The result is ignored for AFTER triggers
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE PROCEDURE public.refresh_dirty_materialized_views()
LANGUAGE plpgsql AS $$
DECLARE
dirty_view record;
lock_id bigint;
lock_acquired boolean;
BEGIN
-- Loop through all views marked as dirty
FOR dirty_view IN
SELECT view_name FROM public.materialized_view_state WHERE is_dirty = true
LOOP
-- Generate a unique, stable lock ID for each view name.
-- hashtext generates a 32-bit integer hash. We cast to bigint to be safe.
lock_id := hashtext(dirty_view.view_name);
-- Try to acquire a transaction-level advisory lock.
-- pg_try_advisory_xact_lock is non-blocking.
SELECT pg_try_advisory_xact_lock(lock_id) INTO lock_acquired;
IF lock_acquired THEN
RAISE NOTICE 'Acquired lock for view %. Refreshing...', dirty_view.view_name;
-- Pre-emptively mark as clean. This prevents a race condition where a new write
-- dirties the flag while we are in the middle of a long refresh.
UPDATE public.materialized_view_state
SET is_dirty = false
WHERE view_name = dirty_view.view_name;
BEGIN
-- The core refresh operation.
EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', dirty_view.view_name);
-- On success, update the last_refreshed_at timestamp.
UPDATE public.materialized_view_state
SET last_refreshed_at = now()
WHERE view_name = dirty_view.view_name;
RAISE NOTICE 'Successfully refreshed view %.', dirty_view.view_name;
EXCEPTION
WHEN OTHERS THEN
-- If the REFRESH fails, mark it as dirty again so we can retry.
RAISE WARNING 'Failed to refresh materialized view %: %', dirty_view.view_name, SQLERRM;
UPDATE public.materialized_view_state
SET is_dirty = true
WHERE view_name = dirty_view.view_name;
-- The transaction-level lock will be released automatically on commit/rollback.
END;
-- The lock is released automatically at the end of the transaction.
ELSE
RAISE NOTICE 'Could not acquire lock for view %. Another process is likely refreshing it. Skipping.', dirty_view.view_name;
END IF;
END LOOP;
END;
$$;

INSERT INTO public.materialized_view_state (view_name) VALUES ('monthly_product_sales');

-- Trigger for order_items (the most frequently changing table)
CREATE TRIGGER trigger_maitain_monthly_product_sales_on_order_items
AFTER INSERT OR UPDATE OR DELETE ON public.order_items
FOR EACH STATEMENT
EXECUTE FUNCTION public.mark_materialized_view_as_dirty('monthly_product_sales');

-- Trigger for orders (changes to order_date affect the view)
CREATE TRIGGER trigger_maitain_monthly_product_sales_on_orders
AFTER INSERT OR UPDATE OR DELETE ON public.orders
FOR EACH STATEMENT
EXECUTE FUNCTION public.mark_materialized_view_as_dirty('monthly_product_sales');

-- Trigger for products (changes to price affect revenue)
CREATE TRIGGER trigger_maitain_monthly_product_sales_on_products
AFTER UPDATE OF price ON public.products -- Only fire if the price changes
FOR EACH STATEMENT
EXECUTE FUNCTION public.mark_materialized_view_as_dirty('monthly_product_sales');
