/**
 * An HTTP flood from a process of its own, so that the flooder's CPU is not the prober's: `connections`
 * keep-alive clients GET the paths in turn, one request at a time each, for `seconds`; a client whose
 * connection is refused or closed reconnects after a pause. Prints one JSON line: requests answered by
 * status, connection errors, requests per second.
 *
 *   node dist/bench/http-flood.js <port> [connections=1000] [seconds=8] [paths=/views,/metrics] [from]
 *
 * With paths `half-open`, each client instead sends part of a request's headers and then nothing, and
 * opens a new connection as soon as the server closes it (the probe lockout of issue 23). `from` is the
 * local address to connect from (127.0.0.2: a client other than the prober on one machine).
 *
 * test/http-flood.test.ts runs it against a daemon and probes /readyz meanwhile; docs/benchmarks.md has
 * its figures.
 */
import { Agent, request } from 'node:http';
import { connect } from 'node:net';

const RECONNECT_PAUSE_MS = 20;
const REQUEST_TIMEOUT_MS = 5000;

async function main(): Promise<void> {
  const [portArg, connectionsArg = '1000', secondsArg = '8', pathsArg = '/views,/metrics', from] =
    process.argv.slice(2);
  const port = Number(portArg);
  const connections = Number(connectionsArg);
  if (pathsArg === 'half-open') return halfOpen(port, connections, Number(secondsArg), from);
  const paths = pathsArg.split(',');
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const statuses: Record<string, number> = {};
  let errors = 0;
  const deadline = Date.now() + Number(secondsArg) * 1000;
  const client = async (i: number) => {
    for (let n = i; Date.now() < deadline; n += 1) {
      await new Promise<void>((resolve) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: paths[n % paths.length],
            agent,
            timeout: REQUEST_TIMEOUT_MS,
            ...(from ? { localAddress: from } : {}),
          },
          (res) => {
            res.resume();
            res.on('end', () => (statuses[res.statusCode ?? 0] = (statuses[res.statusCode ?? 0] ?? 0) + 1));
            res.on('close', () => resolve());
          },
        );
        req.on('timeout', () => req.destroy());
        req.on('error', () => {
          errors += 1;
          setTimeout(resolve, RECONNECT_PAUSE_MS);
        });
        req.end();
      });
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: connections }, (_, i) => client(i)));
  agent.destroy();
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0);
  const seconds = (Date.now() - t0) / 1000;
  process.stdout.write(
    `${JSON.stringify({ connections, seconds, statuses, errors, requestsPerSecond: Math.round(answered / seconds) })}\n`,
  );
}

/** Half-open requests that re-open as they are closed; prints connections opened and closed by the server. */
async function halfOpen(port: number, connections: number, seconds: number, from?: string): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let opened = 0;
  let closed = 0;
  const open: Set<ReturnType<typeof connect>> = new Set();
  const client = () =>
    new Promise<void>((resolve) => {
      const next = () => {
        if (Date.now() >= deadline) return resolve();
        const s = connect({ port, host: '127.0.0.1', ...(from ? { localAddress: from } : {}) }, () => {
          opened += 1;
          s.write('GET /views HTTP/1.1\r\nHost: x\r\nX-Slow: ');
        });
        open.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          open.delete(s);
          closed += 1;
          setTimeout(next, RECONNECT_PAUSE_MS);
        });
      };
      next();
    });
  const t0 = Date.now();
  const stop = setTimeout(() => {
    for (const s of open) s.destroy();
  }, seconds * 1000);
  await Promise.all(Array.from({ length: connections }, client));
  clearTimeout(stop);
  process.stdout.write(
    `${JSON.stringify({ connections, seconds: (Date.now() - t0) / 1000, statuses: {}, errors: closed, requestsPerSecond: 0, opened })}\n`,
  );
}

await main();
