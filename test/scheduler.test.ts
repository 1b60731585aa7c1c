import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../src/logger.js';
import { Scheduler, type Job } from '../src/daemon/scheduler.js';

const DEBOUNCE = 100;
const MAX_WAIT = 500;

function scheduler() {
  const s = new Scheduler({ logger: createLogger('silent'), debounceMs: DEBOUNCE, maxWaitMs: MAX_WAIT });
  s.setViews([
    { id: 1, name: 'public.a', debounceMs: null, maxWaitMs: null },
    { id: 2, name: 'public.b', debounceMs: 0, maxWaitMs: 0 },
  ]);
  const due: (Job & { at: number })[] = [];
  const unknown: number[] = [];
  s.on('due', (job) => due.push({ ...job, at: Date.now() }));
  s.on('unknown', (id) => unknown.push(id));
  return { s, due, unknown };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('the per-view scheduler', () => {
  it('debounces a burst of events into one job after the quiet time', () => {
    const { s, due } = scheduler();
    for (let i = 0; i < 5; i += 1) {
      s.schedule(1, 'notify');
      vi.advanceTimersByTime(50);
    }
    expect(due).toEqual([]);
    vi.advanceTimersByTime(DEBOUNCE);
    expect(due).toHaveLength(1);
    expect(due[0]).toMatchObject({ viewId: 1, cause: 'notify', force: false });
    s.stop();
  });

  it('never lets a stream of events postpone a refresh beyond max wait', () => {
    const { s, due } = scheduler();
    for (let t = 0; t < 2000; t += 50) {
      s.schedule(1, 'notify');
      vi.advanceTimersByTime(50);
    }
    expect(due.length).toBeGreaterThanOrEqual(1);
    expect(due[0]!.at).toBeLessThanOrEqual(MAX_WAIT);
    s.stop();
  });

  it('keeps one job per view: events while queued are covered, events while running cause exactly one more', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(DEBOUNCE);
    expect(due).toHaveLength(1);
    s.schedule(1, 'notify');
    s.schedule(1, 'sweep');
    vi.advanceTimersByTime(1000);
    expect(due).toHaveLength(1);
    s.started(due.at(-1)!);
    for (let i = 0; i < 10; i += 1) s.schedule(1, 'notify');
    vi.advanceTimersByTime(200);
    expect(due).toHaveLength(1);
    s.finished(1, { kind: 'done' });
    // one more refresh, a debounce after the one it follows (the coalescing bound)
    vi.advanceTimersByTime(DEBOUNCE - 1);
    expect(due).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(due).toHaveLength(2);
    s.started(due.at(-1)!);
    s.finished(1, { kind: 'done' });
    vi.advanceTimersByTime(5000);
    expect(due).toHaveLength(2);
    s.stop();
  });

  it('retries after the delay a busy or waiting cycle asks for and ignores events meanwhile', () => {
    const { s, due } = scheduler();
    s.schedule(2, 'notify');
    vi.advanceTimersByTime(0);
    s.started(due.at(-1)!);
    s.finished(2, { kind: 'retry', afterMs: 1000 });
    s.schedule(2, 'notify');
    vi.advanceTimersByTime(999);
    expect(due).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(due).toHaveLength(2);
    expect(due[1]!.cause).toBe('retry');
    s.stop();
  });

  it('skips the debounce for sweeps and marks periodic and manual refreshes as forced', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'interval');
    vi.advanceTimersByTime(0);
    expect(due[0]).toMatchObject({ cause: 'interval', force: true });
    s.stop();
  });

  it('forces a queued job when a manual or interval refresh arrives before it starts', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(DEBOUNCE);
    expect(due).toEqual([expect.objectContaining({ viewId: 1, cause: 'notify', force: false })]);
    s.schedule(1, 'manual');
    vi.advanceTimersByTime(1000);
    expect(due).toHaveLength(1);
    expect(s.started(due[0]!)).toEqual({ cause: 'manual', force: true });
    s.finished(1, { kind: 'done' });
    vi.advanceTimersByTime(5000);
    expect(due).toHaveLength(1);
    s.stop();
  });

  it('starts a queued job with the cause and force it was due with when nothing arrived meanwhile', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(DEBOUNCE);
    s.schedule(1, 'notify');
    expect(s.started(due[0]!)).toEqual({ cause: 'notify', force: false });
    s.stop();
  });

  it('reports unknown views instead of scheduling them, and forgets views that are gone', () => {
    const { s, due, unknown } = scheduler();
    s.schedule(99, 'notify');
    expect(unknown).toEqual([99]);
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(DEBOUNCE);
    s.started(due.at(-1)!);
    s.finished(1, { kind: 'gone' });
    expect(s.knows(1)).toBe(false);
    expect(due).toHaveLength(1);
    s.stop();
  });

  it('leaves no timer behind after stop()', () => {
    const { s } = scheduler();
    s.schedule(1, 'notify');
    s.schedule(2, 'notify');
    s.stop();
    expect(vi.getTimerCount()).toBe(0);
  });
  it('retries a failed view a debounce after its sources change again, not only when its backoff ends, and not twice in a row early', () => {
    const { s, due } = scheduler();
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(DEBOUNCE);
    s.started(due[0]!);
    s.finished(1, { kind: 'retry', afterMs: 60_000, failed: true });
    vi.advanceTimersByTime(1000);
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(DEBOUNCE);
    expect(due).toHaveLength(2);
    expect(due[1]).toMatchObject({ cause: 'notify' });
    // the early attempt failed too: the next one waits for its backoff whatever the writes
    s.started(due[1]!);
    s.finished(1, { kind: 'retry', afterMs: 60_000, failed: true });
    s.schedule(1, 'notify');
    vi.advanceTimersByTime(30_000);
    expect(due).toHaveLength(2);
    vi.advanceTimersByTime(30_000);
    expect(due).toHaveLength(3);
    expect(due[2]).toMatchObject({ cause: 'retry' });
    s.stop();
  });
});
