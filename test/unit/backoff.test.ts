import { describe, expect, it } from 'vitest';
import { BACKOFF_JITTER } from '../../src/db/protocol.js';
import { backoffDelay } from '../../src/daemon/lib/backoff.js';

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
    'attempt %i: doubles from the base up to the cap (%i ms), jittered within [cap x (1 - BACKOFF_JITTER), cap]',
    (attempt, cap) => {
      expect(backoffDelay(attempt, BASE_MS, MAX_MS, () => 0)).toBe(cap);
      expect(backoffDelay(attempt, BASE_MS, MAX_MS, () => 0.5)).toBe(
        Math.round(cap * (1 - BACKOFF_JITTER / 2)),
      );
      expect(backoffDelay(attempt, BASE_MS, MAX_MS, () => 1)).toBe(Math.round(cap * (1 - BACKOFF_JITTER)));
    },
  );

  it('treats an attempt below 1 as the first', () => {
    expect(backoffDelay(0, BASE_MS, MAX_MS, () => 0)).toBe(BASE_MS);
    expect(backoffDelay(-3, BASE_MS, MAX_MS, () => 0)).toBe(BASE_MS);
  });
});
