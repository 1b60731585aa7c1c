-- The floor of any PL/pgSQL trigger: statement triggers on the same tables and events as mvrefresh's that
-- do nothing at all. What they cost is the call itself (the after-trigger queue, the PL/pgSQL function call
-- and its per-transaction setup), which no trigger body can avoid.
CREATE FUNCTION public.do_nothing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END;
$$;
CREATE TRIGGER nothing_on_order_items AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.order_items
    FOR EACH STATEMENT EXECUTE FUNCTION public.do_nothing();
CREATE TRIGGER nothing_on_orders AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.orders
    FOR EACH STATEMENT EXECUTE FUNCTION public.do_nothing();
CREATE TRIGGER nothing_on_products AFTER UPDATE OF price ON public.products
    FOR EACH STATEMENT EXECUTE FUNCTION public.do_nothing();
