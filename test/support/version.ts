import type pg from 'pg';

/** server_version_num of the server `client` is connected to (170000 for 17.0). */
export async function serverVersionNum(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query<{ v: number }>(
    "SELECT current_setting('server_version_num')::int AS v",
  );
  return rows[0]!.v;
}

/** MERGE exists from PostgreSQL 15; the MAINTAIN privilege from 17. */
export const PG15 = 150_000;
export const PG17 = 170_000;
