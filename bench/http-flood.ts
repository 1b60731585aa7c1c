/**
 * An HTTP flood from a process of its own, so that the flooder's CPU is not the prober's: `connections`
 * keep-alive clients GET the paths in turn, one request at a time each, for `seconds`; a client whose
 * connection is refused or closed reconnects after a pause. Prints one JSON line: requests answered by
 * status, connection errors, requests per second.
 *
 *   node dist/bench/http-flood.js <port> [connections=1000] [seconds=8] [paths=/views,/metrics]
 *
 * test/http-flood.test.ts runs it against a daemon and probes /readyz meanwhile; docs/benchmarks.md has
 * its figures.
 */
import { Agent, request } from 'node:http';

const RECONNECT_PAUSE_MS = 20;
const REQUEST_TIMEOUT_MS = 5000;

async function main(): Promise<void> {
  const [portArg, connectionsArg = '1000', secondsArg = '8', pathsArg = '/views,/metrics'] =
    process.argv.slice(2);
  const port = Number(portArg);
  const connections = Number(connectionsArg);
  const paths = pathsArg.split(',');
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const statuses: Record<string, number> = {};
  let errors = 0;
  const deadline = Date.now() + Number(secondsArg) * 1000;
  const client = async (i: number) => {
    for (let n = i; Date.now() < deadline; n += 1) {
      await new Promise<void>((resolve) => {
        const req = request(
          { host: '127.0.0.1', port, path: paths[n % paths.length], agent, timeout: REQUEST_TIMEOUT_MS },
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

await main();
