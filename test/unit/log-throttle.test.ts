import { describe, expect, it } from 'vitest';
import { LogThrottle } from '../../src/daemon/lib/log-throttle.js';

describe('LogThrottle', () => {
  it('logs one line per key and interval, and the next says how many were left out', () => {
    const clock = { t: 0 };
    const throttle = new LogThrottle(1000, () => clock.t);
    expect(throttle.admit('a')).toBe(0);
    clock.t = 999;
    expect([throttle.admit('a'), throttle.admit('a'), throttle.admit('a')]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    expect(throttle.admit('b')).toBe(0);
    clock.t = 1000;
    expect(throttle.admit('a')).toBe(3);
    expect(throttle.admit('a')).toBeUndefined();
    clock.t = 2000;
    expect(throttle.admit('a')).toBe(1);
  });

  it('forgets its keys past a hundred, so that varied texts cannot grow it without bound', () => {
    const throttle = new LogThrottle(1000, () => 0);
    expect(throttle.admit('kept')).toBe(0);
    for (let i = 0; i < 100; i += 1) throttle.admit(`key ${i}`);
    expect(throttle.admit('kept')).toBeUndefined();
    throttle.admit('one more');
    expect(throttle.admit('kept')).toBe(0);
  });
});
