-- The data of bench/replace.ts: :accounts accounts and :rows events (both replaced by the bench), the view
-- whose definition the bench changes (one build of it takes tens of seconds) and its unique index (what
-- REFRESH ... CONCURRENTLY needs). The plain views over it are created by the bench.
CREATE TABLE public.accounts (
    id integer PRIMARY KEY,
    region text NOT NULL
);
CREATE TABLE public.events (
    id bigserial PRIMARY KEY,
    account_id integer NOT NULL,
    kind smallint NOT NULL,
    amount numeric(12, 2) NOT NULL,
    at timestamptz NOT NULL
);
INSERT INTO public.accounts
SELECT g, 'region ' || (g % 20) FROM generate_series(1, :accounts) g;
INSERT INTO public.events (account_id, kind, amount, at)
SELECT (1 + (g * 7919) % :accounts)::integer, (g % 4)::smallint, (g % 10000) / 100.0,
       timestamptz '2026-01-01' + (g % 31536000) * interval '1 second'
  FROM generate_series(1::bigint, :rows) g;
CREATE INDEX events_account_id ON public.events (account_id);
CREATE MATERIALIZED VIEW public.account_kind_totals AS
SELECT e.account_id, e.kind, count(*) AS events, sum(e.amount) AS total,
       count(DISTINCT date_trunc('day', e.at)) AS active_days
  FROM public.events e
 GROUP BY e.account_id, e.kind;
CREATE UNIQUE INDEX account_kind_totals_key ON public.account_kind_totals (account_id, kind);
