import { readFileSync } from 'node:fs';
import type { ServerOptions, Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * What one client, or many, may take of the HTTP server. Probes and scrapers send small requests on few
 * connections: these caps only bite on floods, slow or half-open requests, and oversized headers.
 */
export const HTTP_LIMITS = {
  /** The request line and headers must arrive within this; a half-open request holds a slot no longer. */
  headersTimeoutMs: 5000,
  /** The whole request (the endpoints take no body). */
  requestTimeoutMs: 10_000,
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: 5000,
  /** Requests served on one keep-alive connection before it is closed. */
  maxRequestsPerSocket: 1000,
  /** Bytes of request line and headers. */
  maxHeaderSize: 8192,
  /** /views and /metrics answered per second at most, after a burst (RequestGate); probes are not paced. */
  bulkPerSecond: 100,
  bulkBurst: 20,
  /** How often the timeouts above are checked. */
  checkIntervalMs: 1000,
  /** File descriptors kept for everything but HTTP: database connections, the listener, logs, files. */
  fdReserve: 100,
  /** HTTP connections allowed however low the file descriptor limit is. */
  minConnections: 8,
} as const;

/**
 * The connection cap: the configured one, lowered so that HTTP can never take the file descriptors the
 * database connections need (an EMFILE on connect would stop refreshes). The soft limit is read from
 * /proc (Linux); elsewhere the configured cap stands.
 */
export function effectiveMaxConnections(configured: number, limitsFile = '/proc/self/limits'): number {
  let soft: number | undefined;
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(limitsFile, 'utf8'))?.[1];
    if (line && line !== 'unlimited') soft = Number(line);
  } catch {
    return configured;
  }
  if (soft === undefined) return configured;
  return Math.min(configured, Math.max(HTTP_LIMITS.minConnections, soft - HTTP_LIMITS.fdReserve));
}

/** Options for createServer(). */
export const serverOptions: ServerOptions = {
  maxHeaderSize: HTTP_LIMITS.maxHeaderSize,
  requestTimeout: HTTP_LIMITS.requestTimeoutMs,
  headersTimeout: HTTP_LIMITS.headersTimeoutMs,
  keepAliveTimeout: HTTP_LIMITS.keepAliveTimeoutMs,
  connectionsCheckingInterval: HTTP_LIMITS.checkIntervalMs,
};

/**
 * The limits that are properties of the server rather than options of createServer(). maxConnections
 * (http.maxConnections, lowered by effectiveMaxConnections()) keeps file descriptors for the database.
 */
export function applyLimits(server: Server, maxConnections: number, shed: () => boolean): void {
  // not server.maxConnections, which refuses the newcomer: a flood that holds every slot would refuse
  // every probe. Beyond the cap a request parked at the gate (a bulk client) gives its connection up;
  // only when none is parked is the newcomer refused.
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (open.size > maxConnections && !shed()) socket.destroy();
  });
  server.maxRequestsPerSocket = HTTP_LIMITS.maxRequestsPerSocket;
  // a client that sends garbage or stalls is answered by Node (400, 408, 431) and dropped; nothing is
  // logged per connection, so that a flood cannot flood the logs as well
  server.on('clientError', (_err, socket) => {
    if (socket.writable && !socket.writableEnded)
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
}
