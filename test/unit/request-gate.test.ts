import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RequestGate } from '../../src/daemon/http/request-gate.js';

/** Settles every promise that the gate resolved in this turn. */
const settle = () => Promise.resolve();

describe('RequestGate', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Admits `n` requests and records, in order of the answers, `i answered` or `i refused`. */
  function admitAll(gate: RequestGate, n: number) {
    const answers: string[] = [];
    for (let i = 0; i < n; i += 1)
      void gate.admit().then((ok) => answers.push(`${i} ${ok ? 'answered' : 'refused'}`));
    return answers;
  }
  const answered = (...ids: number[]) => ids.map((i) => `${i} answered`);

  it('answers a burst at once, then the waiting ones at perSecond, in arrival order', async () => {
    const gate = new RequestGate(10, 3, 100, () => Date.now());
    const answers = admitAll(gate, 6);
    await settle();
    expect(answers).toEqual(answered(0, 1, 2));
    await vi.advanceTimersByTimeAsync(100);
    expect(answers).toEqual(answered(0, 1, 2, 3));
    await vi.advanceTimersByTimeAsync(200);
    expect(answers).toEqual(answered(0, 1, 2, 3, 4, 5));
  });

  it('refuses at once beyond maxWaiting, and keeps the ones already waiting', async () => {
    const gate = new RequestGate(10, 1, 2, () => Date.now());
    const answers = admitAll(gate, 5);
    await settle();
    expect(answers).toEqual(['0 answered', '3 refused', '4 refused']);
    await vi.advanceTimersByTimeAsync(200);
    expect(answers.slice(3)).toEqual(answered(1, 2));
  });

  it('refills at most a burst after an idle time', async () => {
    const gate = new RequestGate(10, 2, 100, () => Date.now());
    admitAll(gate, 2);
    await vi.advanceTimersByTimeAsync(60_000);
    const answers = admitAll(gate, 3);
    await settle();
    expect(answers).toEqual(answered(0, 1));
    gate.close();
  });

  it('shedOldest refuses the request that waited longest; false when none waits', async () => {
    const gate = new RequestGate(1, 1, 10, () => Date.now());
    expect(gate.shedOldest()).toBe(false);
    const answers = admitAll(gate, 3);
    await settle();
    expect(gate.shedOldest()).toBe(true);
    await settle();
    expect(answers).toEqual(['0 answered', '1 refused']);
    gate.close();
  });

  it('close lets every waiting request through and stops the timer', async () => {
    const gate = new RequestGate(1, 1, 10, () => Date.now());
    const answers = admitAll(gate, 4);
    gate.close();
    await settle();
    expect(answers).toEqual(answered(0, 1, 2, 3));
    expect(vi.getTimerCount()).toBe(0);
  });
});
