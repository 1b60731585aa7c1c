-- What `mvrefresh status` and the daemon's /views show. Columns are only ever added at the end (daemons of
-- earlier versions read this view).
CREATE OR REPLACE VIEW mvrefresh.status AS
SELECT s.id,
       format('%I.%I', s.view_schema, s.view_name) AS view,
       s.view_schema,
       s.view_name,
       (m.oldest IS NOT NULL OR s.started_gen > s.done_gen) AS dirty,
       s.started_gen > s.done_gen AS cycle_unfinished,
       LEAST(m.oldest, s.cycle_since) AS dirty_since,
       CASE WHEN m.oldest IS NOT NULL OR s.started_gen > s.done_gen
            THEN extract(epoch FROM now() - COALESCE(LEAST(m.oldest, s.cycle_since), now()))
            ELSE 0 END::double precision AS staleness_seconds,
       s.last_refreshed_at,
       s.last_duration_ms,
       s.last_outcome,
       s.last_error,
       s.last_sqlstate,
       s.last_error_at,
       s.consecutive_failures,
       s.next_attempt_at,
       s.debounce_ms,
       s.max_wait_ms,
       s.refresh_interval_ms,
       s.allow_blocking_refresh,
       s.depth,
       s.sources,
       s.warnings,
       ARRAY(SELECT format('%I.%I', u.view_schema, u.view_name)
               FROM mvrefresh.view_deps d JOIN mvrefresh.view_state u ON u.id = d.depends_on
              WHERE d.view_id = s.id ORDER BY 1) AS depends_on,
       s.max_staleness_ms,
       s.refresh_budget,
       s.paused,
       s.target_misses,
       s.last_miss_staleness_ms,
       -- how a change of the sources after watch is found: at once (the event trigger), or by the daemon's
       -- periodic check (driftCheckIntervalMs)
       CASE WHEN (SELECT count(*) FROM pg_event_trigger e
                   WHERE e.evtname IN ('mvrefresh_ddl', 'mvrefresh_drop') AND e.evtenabled <> 'D') = 2
            THEN 'event_trigger' ELSE 'periodic_check' END AS drift_detection
  FROM mvrefresh.view_state s
  LEFT JOIN LATERAL (SELECT min(x.marked_at) AS oldest
                       FROM (SELECT marked_at FROM mvrefresh.marks WHERE view_id = s.id
                             UNION ALL
                             SELECT marked_at FROM mvrefresh.table_marks WHERE relid = ANY (s.source_relids)) x
                    ) m ON true;
