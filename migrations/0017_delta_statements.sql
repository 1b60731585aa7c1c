-- Version 17: the views made incremental by an earlier version get two of this version's statements,
-- rewritten from their stored ones (src/incremental/statements.ts writes them so for new views):
--  - a delta view's upsert leaves a group whose delta changes nothing as it is (every count, sum and
--    distinct delta 0, no added extreme) instead of writing the same row again. The condition is built
--    from the upsert's own SET list, and only when every assignment in it is one this version writes (an
--    added delta, GREATEST / LEAST of an extreme, an average from its sum and count); any other upsert is
--    left as it was (right, only dearer);
--  - a count(DISTINCT) view kept by probes keeps its probe in its subquery (OFFSET 0): pulled up, the probe
--    ran once per reference of the CASE that reads it, twice per group and value.
-- The netting of min/max values over a batch (the delta's build) is not rewritten: those views recompute
-- a group whose extreme row was updated in another column until watched with --incremental again.
-- A data change only; every apply runs the statements stored for its view, whichever daemon calls it.
-- compatibility: keeps older daemons working

DO $$
DECLARE
    r record;
    rest pg_catalog.text;
    m pg_catalog.text[];
    changes pg_catalog.text[];
    ident CONSTANT pg_catalog.text := '"(?:[^"]|"")*"';
BEGIN
    FOR r IN
        SELECT i.view_id, i.statements OPERATOR(pg_catalog.#>>) '{delta,upsert}' AS upsert
          FROM mvrefresh.incremental i
         WHERE i.statements OPERATOR(pg_catalog.#>>) '{delta,upsert}' IS NOT NULL
    LOOP
        CONTINUE WHEN pg_catalog.strpos(r.upsert, ' <> 0 AND (') OPERATOR(pg_catalog.>) 0;
        rest := pg_catalog.substring(r.upsert, '^WITH u AS \(UPDATE .+? x SET (.+?) FROM pg_temp\.mvrefresh_delta d WHERE ');
        CONTINUE WHEN rest IS NULL;
        changes := '{}';
        WHILE rest OPERATOR(pg_catalog.<>) '' LOOP
            -- an added delta, an extreme, an average: one assignment, then ", " or the end
            m := pg_catalog.regexp_match(rest,
                '^((' OPERATOR(pg_catalog.||) ident OPERATOR(pg_catalog.||) ') = x\.\2 \+ COALESCE\(d\.\2, 0\))(, |$)');
            IF m IS NOT NULL THEN
                changes := changes OPERATOR(pg_catalog.||) ('d.' OPERATOR(pg_catalog.||) m[2] OPERATOR(pg_catalog.||) ' <> 0');
            ELSE
                m := pg_catalog.regexp_match(rest,
                    '^((' OPERATOR(pg_catalog.||) ident OPERATOR(pg_catalog.||) ') = (?:GREATEST|LEAST)\(x\.\2, d\.\2\))(, |$)');
                IF m IS NOT NULL THEN
                    changes := changes OPERATOR(pg_catalog.||) ('d.' OPERATOR(pg_catalog.||) m[2] OPERATOR(pg_catalog.||) ' IS NOT NULL');
                ELSE
                    m := pg_catalog.regexp_match(rest,
                        '^((' OPERATOR(pg_catalog.||) ident OPERATOR(pg_catalog.||) ') = \(x\.(' OPERATOR(pg_catalog.||) ident OPERATOR(pg_catalog.||) ') \+ COALESCE\(d\.\3, 0\)\)::pg_catalog\.numeric / '
                        'NULLIF\(x\.(' OPERATOR(pg_catalog.||) ident OPERATOR(pg_catalog.||) ') \+ COALESCE\(d\.\4, 0\), 0\)::pg_catalog\.numeric)(, |$)');
                END IF;
            END IF;
            EXIT WHEN m IS NULL;
            rest := pg_catalog.substr(rest, pg_catalog.length(m[1]) OPERATOR(pg_catalog.+) 1);
            rest := pg_catalog.regexp_replace(rest, '^, ', '');
        END LOOP;
        CONTINUE WHEN rest OPERATOR(pg_catalog.<>) '' OR pg_catalog.cardinality(changes) OPERATOR(pg_catalog.=) 0;
        UPDATE mvrefresh.incremental i
           SET statements = pg_catalog.jsonb_set(i.statements, '{delta,upsert}', pg_catalog.to_jsonb(
               pg_catalog.regexp_replace(r.upsert, ' <> 0 RETURNING ',
                   ' <> 0 AND (' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(changes, ' OR ') OPERATOR(pg_catalog.||) ') RETURNING ')))
         WHERE i.view_id OPERATOR(pg_catalog.=) r.view_id;
    END LOOP;

    UPDATE mvrefresh.incremental i
       SET statements = pg_catalog.jsonb_set(i.statements, '{delta,probe,probe}', pg_catalog.to_jsonb(
           pg_catalog.replace(i.statements OPERATOR(pg_catalog.#>>) '{delta,probe,probe}',
               ' FROM pg_temp.mvrefresh_dd mvr_dd) p GROUP BY ', ' FROM pg_temp.mvrefresh_dd mvr_dd OFFSET 0) p GROUP BY ')))
     WHERE i.statements OPERATOR(pg_catalog.#>>) '{delta,probe,probe}' LIKE '% FROM pg_temp.mvrefresh\_dd mvr\_dd) p GROUP BY %';
END
$$;
