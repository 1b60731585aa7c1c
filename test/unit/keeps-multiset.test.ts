import { describe, expect, it } from 'vitest';
import {
  MULTISET_MIN_ROWS_PER_GROUP,
  MULTISET_SMALL_FACT,
  keepsMultiset,
} from '../../src/incremental/analyze.js';

describe('the choice of a multiset for count(DISTINCT)', () => {
  it('keeps one for large groups, and recomputes small groups of a large fact by key', () => {
    expect(keepsMultiset(5_000_000, 5_000_000 / MULTISET_MIN_ROWS_PER_GROUP)).toBe(true);
    // the bench's distinct commenters per post: 10 comments per post
    expect(keepsMultiset(5_000_000, 500_000)).toBe(false);
    expect(keepsMultiset(5_000_000, 1)).toBe(true);
  });

  it('keeps one for any small fact, and for an empty view', () => {
    expect(keepsMultiset(MULTISET_SMALL_FACT - 1, MULTISET_SMALL_FACT - 1)).toBe(true);
    expect(keepsMultiset(MULTISET_SMALL_FACT, MULTISET_SMALL_FACT)).toBe(false);
    expect(keepsMultiset(MULTISET_SMALL_FACT * 10, 0)).toBe(true);
  });
});
