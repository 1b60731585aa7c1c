import { redactUrl } from '../db/url.js';
import { listenDiagnosis } from '../db/listen-diagnosis.js';

/**
 * The line `mvrefresh status` prints about notifications: whether LISTEN through the URL the daemon would
 * use (MVREFRESH_LISTEN_URL, else the database URL) receives another session's NOTIFY.
 */
export function formatDelivery(
  delivery: boolean | string | undefined,
  opts: { listenUrl: string; separateListenUrl: boolean; sweepIntervalMs: number },
): string {
  const where = redactUrl(opts.listenUrl);
  if (delivery === true)
    return `notifications: LISTEN through ${where} receives them; refreshes follow writes`;
  if (delivery === false)
    return `notifications: DEGRADED: ${listenDiagnosis(opts)} (checked through ${where})`;
  return `notifications: LISTEN through ${where} could not be checked: ${delivery ?? 'not checked'}`;
}
