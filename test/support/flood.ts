import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

export interface FloodResult {
  connections: number;
  seconds: number;
  /** Requests answered, by status. */
  statuses: Record<string, number>;
  /** Connections refused, reset or timed out. */
  errors: number;
  requestsPerSecond: number;
  /** Half-open mode: connections the flooder opened. */
  opened?: number;
}

/** Half-open requests that re-open as the server closes them (bench/http-flood.ts, mode half-open). */
export function halfOpenFlood(port: number, connections: number, seconds: number, from?: string) {
  return flood(port, connections, seconds, ['half-open'], from);
}

/** Runs the built flooder (bench/http-flood.ts) in a process of its own; resolves with its figures. */
export function flood(
  port: number,
  connections: number,
  seconds: number,
  paths: string[],
  from?: string,
): Promise<FloodResult> {
  const child = spawn(
    process.execPath,
    [
      join(packageRoot, 'dist', 'bench', 'http-flood.js'),
      String(port),
      String(connections),
      String(seconds),
      paths.join(','),
      ...(from ? [from] : []),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as FloodResult)
        : reject(new Error(`flooder exited ${code}: ${out}`)),
    ),
  );
}

/**
 * One probe as a kubelet sends it: a new connection, a 1 s timeout; the status, or 0 for no answer. `from`:
 * the local address to send it from (another client than a flooder on 127.0.0.1).
 */
export function probe(port: number, path: string, timeoutMs = 1000, from?: string): Promise<number> {
  return new Promise((resolve) => {
    const options = { host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs };
    const req = request(from ? { ...options, localAddress: from } : options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('close', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Opens connections that send part of a request and then nothing (half-open requests); resolves when open. */
export async function halfOpen(port: number, count: number): Promise<Socket[]> {
  const sockets: Socket[] = [];
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.write('GET /views HTTP/1.1\r\nHost: x\r\n');
            resolve();
          });
          s.on('error', () => resolve());
          sockets.push(s);
        }),
    ),
  );
  return sockets;
}
