-- The naive alternative: a statement trigger that calls pg_notify in every writing transaction (the
-- identical notifications of its two statements are merged into one at commit).
CREATE FUNCTION public.notify_every_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monthly_product_sales', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER notify_on_order_items AFTER INSERT OR UPDATE OR DELETE ON public.order_items
    FOR EACH STATEMENT EXECUTE FUNCTION public.notify_every_write();
CREATE TRIGGER notify_on_orders AFTER INSERT OR UPDATE OR DELETE ON public.orders
    FOR EACH STATEMENT EXECUTE FUNCTION public.notify_every_write();
CREATE TRIGGER notify_on_products AFTER UPDATE OF price ON public.products
    FOR EACH STATEMENT EXECUTE FUNCTION public.notify_every_write();
