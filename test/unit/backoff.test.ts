import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/daemon/backoff.js';

const BASE_MS = 100;
const MAX_MS = 5000;

describe('backoffDelay', () => {
  it.each([
    [1, 100],
    [2, 200],
    [3, 400],
    [6, 3200],
    [7, MAX_MS],
    [1000, MAX_MS],
  ])(
    'attempt %i: doubles from the base up to the cap (%i ms), jittered within [cap/2, cap]',
    (attempt, cap) => {
      expect(backoffDelay(attempt, BASE_MS, MAX_MS, () => 0)).toBe(cap / 2);
      expect(backoffDelay(attempt, BASE_MS, MAX_MS, () => 0.5)).toBe((cap * 3) / 4);
      expect(backoffDelay(attempt, BASE_MS, MAX_MS, () => 1)).toBe(cap);
    },
  );

  it('treats an attempt below 1 as the first', () => {
    expect(backoffDelay(0, BASE_MS, MAX_MS, () => 1)).toBe(BASE_MS);
    expect(backoffDelay(-3, BASE_MS, MAX_MS, () => 1)).toBe(BASE_MS);
  });
});
