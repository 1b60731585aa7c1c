-- Waits until replace request p_id is done: returns then; raises its error if it failed, or an error when
-- p_timeout passes first (the request goes on). Polls in transactions of its own, so that the request's
-- row is read as committed by the executor: call it outside a transaction block (a migration tool's
-- non-transactional migration), after the transaction that called request_replace() committed.
CREATE OR REPLACE PROCEDURE mvrefresh.wait_replace(p_id bigint, p_timeout interval DEFAULT '1 hour')
    LANGUAGE plpgsql
AS $$
DECLARE
    deadline pg_catalog.timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) p_timeout;
    r mvrefresh.replace_requests;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    LOOP
        SELECT q.* INTO r
          FROM mvrefresh.replace_requests q WHERE q.id OPERATOR(pg_catalog.=) p_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'replace request % does not exist', p_id USING ERRCODE = 'undefined_object';
        END IF;
        IF r.status OPERATOR(pg_catalog.=) 'done' THEN
            RETURN;
        END IF;
        IF r.status OPERATOR(pg_catalog.=) 'failed' THEN
            RAISE EXCEPTION 'replacing %.% failed: %', quote_ident(r.view_schema), quote_ident(r.view_name), r.error
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline THEN
            RAISE EXCEPTION 'replace request % is still % (step %) after %', p_id, r.status,
                COALESCE(r.step, 'none'), p_timeout
                USING ERRCODE = 'query_canceled',
                      HINT = CASE WHEN r.status OPERATOR(pg_catalog.=) 'pending'
                                  THEN 'No daemon has claimed it: is `mvrefresh run` running against this database?'
                                  ELSE 'It goes on: call wait_replace again.' END;
        END IF;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        PERFORM pg_catalog.pg_sleep(0.2);
    END LOOP;
END
$$;
