import { afterEach, describe, expect, it, vi } from 'vitest';
import { SerialTask } from '../../src/daemon/lib/serial-task.js';

afterEach(() => {
  vi.useRealTimers();
});

/** A task whose runs end when the test says so. */
function gatedTask() {
  const runs: string[] = [];
  const ends: (() => void)[] = [];
  const task = new SerialTask<string, string>(
    (reason) => {
      runs.push(reason);
      return new Promise((resolve) => ends.push(() => resolve(reason)));
    },
    (result) => ({ reason: `after ${result}`, afterMs: 1000 }),
  );
  const endRun = async () => {
    ends.shift()?.();
    await vi.advanceTimersByTimeAsync(0);
  };
  return { task, runs, endRun };
}

describe('SerialTask', () => {
  it('runs one at a time: requests during a run make one more run, with the latest reason', async () => {
    vi.useFakeTimers();
    const { task, runs, endRun } = gatedTask();
    task.start();
    task.request('a');
    task.request('b');
    task.request('c');
    expect(runs).toEqual(['a']);
    await endRun();
    expect(runs).toEqual(['a', 'c']);
    await endRun();
    expect(runs).toEqual(['a', 'c']);
    await task.stop();
  });

  it('arms the next run as the result says, and a request before it fires replaces the timer', async () => {
    vi.useFakeTimers();
    const { task, runs, endRun } = gatedTask();
    task.start();
    task.request('a');
    await endRun();
    await vi.advanceTimersByTimeAsync(999);
    expect(runs).toEqual(['a']);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toEqual(['a', 'after a']);
    await endRun();
    task.request('now');
    await vi.advanceTimersByTimeAsync(1000);
    expect(runs).toEqual(['a', 'after a', 'now']);
    await endRun();
    await task.stop();
  });

  it('requestAfter runs once the delay passes, unless a request runs first, and says when it is stopped', async () => {
    vi.useFakeTimers();
    const { task, runs, endRun } = gatedTask();
    expect(task.stopped).toBe(true);
    task.start();
    expect(task.stopped).toBe(false);
    task.requestAfter('later', 500);
    await vi.advanceTimersByTimeAsync(499);
    expect(runs).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toEqual(['later']);
    await endRun();
    task.requestAfter('again', 500);
    task.request('now');
    await vi.advanceTimersByTimeAsync(500);
    expect(runs).toEqual(['later', 'now']);
    await endRun();
    await task.stop();
    expect(task.stopped).toBe(true);
  });

  it('ignores requests before start and after stop, and stop waits for the run in progress', async () => {
    vi.useFakeTimers();
    const { task, runs, endRun } = gatedTask();
    task.request('early');
    expect(runs).toEqual([]);
    expect(task.start()).toBe(true);
    expect(task.start()).toBe(false);
    task.request('a');
    let stopped = false;
    const stopping = task.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(stopped).toBe(false);
    await endRun();
    await stopping;
    task.request('late');
    await vi.advanceTimersByTimeAsync(5000);
    expect(runs).toEqual(['a']);
  });
});
