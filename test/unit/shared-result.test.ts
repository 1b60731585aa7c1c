import { describe, expect, it } from 'vitest';
import { SharedResult } from '../../src/daemon/http/shared-result.js';

const TTL_MS = 1000;

/** A SharedResult over a hand-driven clock and a load whose every call the test settles itself. */
function harness() {
  const clock = { t: 1_000_000 };
  const calls: { resolve: (v: number) => void; reject: (e: Error) => void }[] = [];
  const shared = new SharedResult<number>(
    () => new Promise<number>((resolve, reject) => calls.push({ resolve, reject })),
    TTL_MS,
    () => clock.t,
  );
  return { clock, calls, shared };
}

/** Lets the result's own settle handler run after the load settled. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('SharedResult', () => {
  it('runs one load for every caller while it is in flight and for ttlMs after it settled', async () => {
    const { clock, calls, shared } = harness();
    const a = shared.get();
    const b = shared.get();
    expect(calls).toHaveLength(1);
    calls[0]!.resolve(7);
    expect(await Promise.all([a, b])).toEqual([7, 7]);
    await settle();
    clock.t += TTL_MS - 1;
    expect(await shared.get()).toBe(7);
    expect(calls).toHaveLength(1);
    clock.t += 1;
    const c = shared.get();
    expect(calls).toHaveLength(2);
    calls[1]!.resolve(8);
    expect(await c).toBe(8);
  });

  it('shares a failure for ttlMs as well, and reports it until a load succeeds', async () => {
    const { clock, calls, shared } = harness();
    const failure = new Error('database unreachable');
    const a = shared.get();
    calls[0]!.reject(failure);
    await expect(a).rejects.toBe(failure);
    await settle();
    await expect(shared.get()).rejects.toBe(failure);
    expect(calls).toHaveLength(1);
    expect(shared.lastFailure).toEqual({ error: failure });
    clock.t += TTL_MS;
    const b = shared.get();
    calls[1]!.resolve(1);
    await b;
    await settle();
    expect(shared.lastFailure).toBeUndefined();
  });

  it('succeededWithin answers from the last result, starts the next load, and turns false after a failure', async () => {
    const { clock, calls, shared } = harness();
    expect(shared.succeededWithin(5000)).toBe(false);
    expect(calls).toHaveLength(1);
    calls[0]!.resolve(1);
    await settle();
    const succeededAt = clock.t;
    expect(shared.succeededWithin(5000)).toBe(true);
    expect(shared.lastSucceededAt).toBe(succeededAt);
    clock.t += TTL_MS;
    expect(shared.succeededWithin(5000)).toBe(true);
    expect(calls).toHaveLength(2);
    calls[1]!.reject(new Error('gone'));
    await settle();
    expect(shared.succeededWithin(5000)).toBe(false);
    expect(shared.lastSucceededAt).toBe(succeededAt);
    clock.t += 5000;
    expect(shared.succeededWithin(5000)).toBe(false);
  });
});
