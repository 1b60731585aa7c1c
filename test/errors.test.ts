import { open } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { isConnectionError, isPgError } from '../src/db/errors.js';

describe('error classification', () => {
  it('a system error of this process (EMFILE, EPIPE) is never taken for a PostgreSQL error to record on a view', async () => {
    // a real system error from Node, with its string code, as a connect under a full descriptor table gets
    const enoent = await open('/nonexistent/mvrefresh').catch((err: unknown) => err);
    expect(enoent).toMatchObject({ code: 'ENOENT' });
    expect(isPgError(enoent)).toBe(false);
    for (const code of ['EMFILE', 'ENFILE', 'EPIPE']) {
      const err = Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), {
        code,
        errno: -24,
        syscall: 'connect',
      });
      expect(isPgError(err), code).toBe(false);
      // retried locally with backoff, like a lost connection
      expect(isConnectionError(err), code).toBe(true);
    }
  });
});
