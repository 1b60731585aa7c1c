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
            THEN 'event_trigger' ELSE 'periodic_check' END AS drift_detection,
       -- how the view is kept: 'incremental' (watch --incremental), 'full' (REFRESH), or 'full: <clause>' for a
       -- view whose --incremental was refused (mode_reason: the clause that needs a full refresh)
       CASE WHEN i.view_id IS NOT NULL THEN 'incremental'
            WHEN s.mode_reason IS NOT NULL THEN 'full: ' || s.mode_reason
            ELSE 'full' END AS mode,
       CASE WHEN i.view_id IS NULL THEN s.mode_reason END AS mode_reason,
       -- an incremental view's last apply ('keys' or 'full: <reason>'), its keys and milliseconds, the last
       -- full recompute's milliseconds, and the last verify (`mvrefresh verify`, the daemon's periodic one)
       i.last_apply_kind AS incremental_last_apply_kind,
       i.last_apply_keys AS incremental_last_apply_keys,
       i.last_apply_ms AS incremental_last_apply_ms,
       i.last_apply_at AS incremental_last_apply_at,
       i.last_full_ms AS incremental_last_full_ms,
       i.last_verify_at AS incremental_last_verify_at,
       i.verify_mismatches AS incremental_verify_mismatches
  FROM mvrefresh.view_state s
  LEFT JOIN mvrefresh.incremental i ON i.view_id = s.id AND i.state = 'active'
  -- the oldest write the view does not show: a mark of it or of a table it reads, or (an incremental
  -- view) a committed log row its applied snapshot does not show (routines/capture_logs.sql)
  LEFT JOIN LATERAL (SELECT LEAST(min(x.marked_at),
                                  CASE WHEN i.view_id IS NOT NULL THEN mvrefresh.log_behind(s.id) END) AS oldest
                       FROM (SELECT marked_at FROM mvrefresh.marks WHERE view_id = s.id
                             UNION ALL
                             SELECT marked_at FROM mvrefresh.table_marks WHERE relid = ANY (s.source_relids)) x
                    ) m ON true;
