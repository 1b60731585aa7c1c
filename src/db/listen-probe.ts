import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { connectClient } from './connect.js';
import { sql } from './sql.js';

/** How long `mvrefresh status` waits for its probe's notification (a direct connection takes milliseconds). */
export const LISTEN_PROBE_TIMEOUT_MS = 2000;
const PROBE_APP_NAME = 'mvrefresh:probe';

/**
 * The daemon's heartbeat check, once: LISTEN on a private channel through listenUrl, answer a round trip
 * there, then NOTIFY from another session (`notifier`) and see whether it arrives. False means LISTEN on that
 * URL receives nothing from other sessions: a transaction pooler. Connection errors are thrown.
 */
export async function listenDelivers(
  listenUrl: string,
  notifier: pg.ClientBase,
  timeoutMs: number = LISTEN_PROBE_TIMEOUT_MS,
): Promise<boolean> {
  const channel = `mvrefresh_probe_${randomBytes(6).toString('hex')}`;
  const nonce = randomBytes(8).toString('hex');
  const listener = await connectClient(listenUrl, PROBE_APP_NAME);
  let timer: NodeJS.Timeout | undefined;
  try {
    let settle: (delivered: boolean) => void = () => undefined;
    const arrived = new Promise<boolean>((resolve) => {
      settle = resolve;
    });
    listener.on('notification', (n) => {
      if (n.channel === channel && n.payload === nonce) settle(true);
    });
    await listener.query(sql.listen(channel));
    await listener.query(sql.ping);
    await notifier.query(sql.notify, [channel, nonce]);
    timer = setTimeout(() => settle(false), timeoutMs);
    return await arrived;
  } finally {
    clearTimeout(timer);
    await listener.end().catch(() => undefined);
  }
}
