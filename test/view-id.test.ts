import { describe, expect, it } from 'vitest';
import { parseViewId } from '../src/daemon/lib/view-id.js';

describe('view ids from notifications and URLs', () => {
  it('accepts every positive int4 in plain decimal', () => {
    expect(parseViewId('1')).toBe(1);
    expect(parseViewId('1234567890')).toBe(1_234_567_890);
    expect(parseViewId('2147483647')).toBe(2_147_483_647);
  });

  it('rejects zero, signs, leading zeros, spaces, other notations and ids beyond int4', () => {
    for (const text of [
      '',
      '0',
      '-1',
      '+1',
      '01',
      ' 1',
      '1 ',
      '1e3',
      '0x10',
      '1.0',
      '2147483648',
      '99999999999',
      '1; DROP TABLE orders',
      '{"view":1}',
      'x'.repeat(7999),
    ])
      expect(parseViewId(text), JSON.stringify(text.slice(0, 20))).toBeUndefined();
  });
});
