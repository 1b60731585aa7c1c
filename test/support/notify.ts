import pg from 'pg';
import { waitFor } from './wait.js';

const FENCE = 'mvrefresh_test_fence';

/**
 * The payloads sent on channel 'mvrefresh' while action() runs, in commit order. No sleeping: after the
 * action, another session notifies a fence channel, and a listener reads the queue in commit order, so once
 * the fence has arrived every notification committed before it has arrived too.
 */
export async function notificationsDuring(url: string, action: () => Promise<void>): Promise<string[]> {
  const listener = new pg.Client({ connectionString: url, application_name: 'mvrefresh:test-listener' });
  await listener.connect();
  const got: string[] = [];
  let fenced = false;
  const fence = `fence-${process.pid}-${Math.random()}`;
  listener.on('notification', (n) => {
    if (n.channel === 'mvrefresh') got.push(n.payload ?? '');
    else if (n.channel === FENCE && n.payload === fence) fenced = true;
  });
  try {
    await listener.query(`LISTEN mvrefresh; LISTEN ${FENCE}`);
    await action();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('SELECT pg_notify($1, $2)', [FENCE, fence]);
    } finally {
      await c.end();
    }
    // an idle listener backend forwards notifications on its own; the query only hurries it along
    await waitFor('the fence notification', async () => {
      await listener.query('SELECT 1');
      return fenced;
    });
  } finally {
    await listener.end();
  }
  return got;
}
