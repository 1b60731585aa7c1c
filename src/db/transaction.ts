import type pg from 'pg';

/**
 * Runs `fn` in a transaction of its own on `client`, opened by `begin` (`BEGIN`, or with an isolation level):
 * committed when `fn` returns, rolled back when it throws. The error rethrown is `fn`'s: a ROLLBACK that
 * fails too (on a connection that broke) would only hide it.
 */
export async function inTransaction<T>(
  client: pg.ClientBase,
  fn: () => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  await client.query(begin);
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
