import type pg from 'pg';
import type { Finding } from '../commands/doctor.js';
import { describeError } from '../db/errors.js';
import { cleanupOrphans } from './requests.js';

const present = `SELECT pg_catalog.to_regclass('mvrefresh.replace_requests') IS NOT NULL AS present`;

/** Materialized views named like a half-built version that no unfinished request is building. */
const strays = `
  SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'm' AND c.relname ~ '__mvr_new_[0-9]+$'
     AND NOT EXISTS (SELECT FROM mvrefresh.replace_requests r
                      WHERE r.status IN ('pending', 'running') AND r.view_schema = n.nspname
                        AND r.temp_name = c.relname)
   ORDER BY 1`;

/**
 * `doctor`'s review of replacements: it drops the half-built versions that interrupted replacements left
 * (their executor's advisory lock is gone, so nobody is building them) and reports what it dropped, and
 * names leftovers it cannot attribute to a request.
 */
export async function replaceFindings(db: pg.ClientBase): Promise<Finding[]> {
  if (!(await db.query<{ present: boolean }>(present)).rows[0]?.present) return [];
  let orphans;
  try {
    orphans = await cleanupOrphans(db);
  } catch (err) {
    return [
      {
        level: 'problem',
        check: 'replace',
        message: `could not drop what an interrupted replacement left: ${describeError(err)}`,
      },
    ];
  }
  const out: Finding[] = orphans.map((o) => ({
    level: 'warn',
    check: 'replace',
    message:
      `request ${o.id} to replace ${o.view_schema}.${o.view_name} was interrupted: dropped its half-built version` +
      `${o.temp_name ? ` ${o.temp_name}` : ''}; ${o.origin === 'cli' ? 'marked failed' : 'pending again, for a daemon'}`,
  }));
  for (const r of (await db.query<{ name: string }>(strays)).rows)
    out.push({
      level: 'warn',
      check: 'replace',
      message: `${r.name} looks like the half-built version of a replacement that no request is building: DROP MATERIALIZED VIEW ${r.name} if it is not yours`,
    });
  return out.length > 0
    ? out
    : [{ level: 'ok', check: 'replace', message: 'no interrupted replacement left anything' }];
}
