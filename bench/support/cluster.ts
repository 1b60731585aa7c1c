import { PgCluster } from '../../dev/cluster.js';

/**
 * A private cluster set up as a small production server, where the benches' figures are meant to hold:
 * autovacuum and fsync on (dev/cluster.ts turns fsync off for the tests), 2 GB of shared buffers.
 */
export const PRODUCTION_SETTINGS: Readonly<Record<string, string>> = {
  autovacuum: 'on',
  fsync: 'on',
  shared_buffers: "'2GB'",
  work_mem: "'16MB'",
  maintenance_work_mem: "'256MB'",
  max_wal_size: "'4GB'",
};

/**
 * Runs `fn` on a new private cluster with `settings`, started; when it fails, the tail of the server's log
 * goes to stderr with the error. The cluster is stopped and removed afterwards either way.
 */
export async function withCluster<T>(
  settings: Readonly<Record<string, string>>,
  fn: (cluster: PgCluster) => Promise<T>,
): Promise<T> {
  const cluster = await PgCluster.create({ ...settings });
  try {
    await cluster.start();
    return await fn(cluster);
  } catch (err) {
    process.stderr.write(`--- server log ---\n${await cluster.logTail()}\n`);
    throw err;
  } finally {
    await cluster.cleanup();
  }
}
