/**
 * Resources register how to release themselves when they are acquired; release() runs those functions
 * last-in-first-out, runs all of them even when one fails, and reports the first error.
 */
export class Releasers {
  private readonly stack: { name: string; release: () => Promise<void> | void }[] = [];

  add(name: string, release: () => Promise<void> | void): void {
    this.stack.push({ name, release });
  }

  get size(): number {
    return this.stack.length;
  }

  async release(onError?: (name: string, err: unknown) => void): Promise<void> {
    let first: unknown;
    for (let entry = this.stack.pop(); entry; entry = this.stack.pop()) {
      try {
        await entry.release();
      } catch (err) {
        onError?.(entry.name, err);
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }
}
