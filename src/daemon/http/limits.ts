import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerOptions, Server, ServerResponse } from 'node:http';
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

/** What the probe port (/healthz, /readyz only) allows: few, small, quick requests from few clients. */
export const PROBE_LIMITS = {
  /** A probe's request line and headers arrive at once; anything slower is a stalled client. */
  headersTimeoutMs: 2000,
  requestTimeoutMs: 3000,
  keepAliveTimeoutMs: 1000,
  maxHeaderSize: 4096,
  /** Connections open at once on the probe port, and from one address (a kubelet sends one per probe). */
  maxConnections: 64,
  perClientConnections: 8,
  checkIntervalMs: 500,
} as const;

/** Options for createServer() of the main port. */
export const serverOptions: ServerOptions = {
  maxHeaderSize: HTTP_LIMITS.maxHeaderSize,
  requestTimeout: HTTP_LIMITS.requestTimeoutMs,
  headersTimeout: HTTP_LIMITS.headersTimeoutMs,
  keepAliveTimeout: HTTP_LIMITS.keepAliveTimeoutMs,
  connectionsCheckingInterval: HTTP_LIMITS.checkIntervalMs,
};

/** Options for createServer() of the probe port. */
export const probeServerOptions: ServerOptions = {
  maxHeaderSize: PROBE_LIMITS.maxHeaderSize,
  requestTimeout: PROBE_LIMITS.requestTimeoutMs,
  headersTimeout: PROBE_LIMITS.headersTimeoutMs,
  keepAliveTimeout: PROBE_LIMITS.keepAliveTimeoutMs,
  connectionsCheckingInterval: PROBE_LIMITS.checkIntervalMs,
};

export interface ConnectionCaps {
  /** Connections open at once (after effectiveMaxConnections()). */
  total: number;
  /** Connections open at once from one remote address. */
  perClient: number;
}

interface OpenConnection {
  client: string;
  /** A request was received and is not answered yet. */
  busy: boolean;
}

/**
 * The limits that are properties of the server rather than options of createServer(). An address beyond
 * its perClient connections has the newcomer refused: one client (a flood of half-open requests, slow or
 * re-opening sockets) can hold no more than that. Beyond the total cap the newcomer is not simply refused,
 * which would let a flood that holds every slot refuse every probe: first a request parked at the gate (a
 * bulk client) gives its connection up (shedParked), else the oldest connection that has no request in
 * progress (still sending its headers, or idle between keep-alive requests) is closed; only when every
 * connection is answering a request is the newcomer refused.
 */
export function applyLimits(
  server: Server,
  caps: ConnectionCaps,
  shedParked: () => boolean = () => false,
): void {
  const open = new Map<Socket, OpenConnection>();
  const perClient = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const client = socket.remoteAddress ?? '';
    const fromClient = (perClient.get(client) ?? 0) + 1;
    perClient.set(client, fromClient);
    open.set(socket, { client, busy: false });
    socket.once('close', () => {
      open.delete(socket);
      const left = (perClient.get(client) ?? 1) - 1;
      if (left > 0) perClient.set(client, left);
      else perClient.delete(client);
    });
    if (fromClient > caps.perClient) {
      socket.destroy();
      return;
    }
    if (open.size > caps.total && !shedParked() && !closeOldestIdle(open, socket)) socket.destroy();
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const conn = open.get(req.socket);
    if (!conn) return;
    conn.busy = true;
    res.once('close', () => (conn.busy = false));
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

/** Closes the oldest connection (Map order is arrival order) with no request in progress; false if none. */
function closeOldestIdle(open: Map<Socket, OpenConnection>, newcomer: Socket): boolean {
  for (const [socket, conn] of open) {
    if (socket === newcomer || conn.busy || socket.destroyed) continue;
    socket.destroy();
    return true;
  }
  return false;
}
