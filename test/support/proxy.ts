import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export type ProxyMode = 'pass' | 'blackhole' | 'reset';

/**
 * A TCP proxy in front of PostgreSQL for fault tests: `pass` forwards, `blackhole` silently drops every
 * byte in both directions (a half-open connection: nothing is closed, nothing arrives), `reset` resets
 * every connection and every new one.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<[Socket, Socket]>();
  mode: ProxyMode = 'pass';

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<number> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  setMode(mode: ProxyMode): void {
    this.mode = mode;
    if (mode === 'reset') for (const [a, b] of this.pairs) this.kill(a, b);
  }

  get connections(): number {
    return this.pairs.size;
  }

  async stop(): Promise<void> {
    for (const [a, b] of this.pairs) this.kill(a, b);
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.mode === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(this.targetPort, this.targetHost);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (this.mode === 'pass') to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const close = () => this.kill(client, upstream);
    for (const s of pair) {
      s.on('error', close);
      s.on('close', close);
    }
  }

  private kill(a: Socket, b: Socket): void {
    for (const pair of this.pairs) if (pair[0] === a) this.pairs.delete(pair);
    if (!a.destroyed) a.resetAndDestroy();
    if (!b.destroyed) b.resetAndDestroy();
  }
}

/** The URL with its host and port replaced by the proxy's. */
export function viaProxy(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}
