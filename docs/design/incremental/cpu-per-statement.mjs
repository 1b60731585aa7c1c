// CPU time of one backend per writing statement (utime+stime from /proc, insensitive to other load on the
// machine), for each trigger mode; statements run one by one from the client, each its own transaction with
// synchronous_commit off (commit flushes are not what is measured). Usage: node cpu-per-statement.mjs <url>
import pg from 'pg';
import process from 'node:process';
import console from 'node:console';
import { URL } from 'node:url';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const url = process.argv[2];
const N = Number(process.env.N ?? 4000);
const ticks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, clock ticks (1/100 s)
};
const setmode = (mode, event) =>
  execFileSync(new URL('./setmode.sh', import.meta.url).pathname, [mode, event], { stdio: 'ignore' });
const workloads = {
  insert: {
    event: 'INSERT',
    modes: ['none', 'empty', 'cap1', 'cap20'],
    sql: (i) => [
      'INSERT INTO comments (post_id, author_id, score, created_at, body) VALUES ($1, 1, $2, now(), $3)',
      [1 + ((i * 7919) % 500000), (i % 200) - 50, 'x'],
    ],
  },
  update_score: {
    event: 'UPDATE',
    modes: ['none', 'empty', 'cap1'],
    sql: (i) => ['UPDATE comments SET score = score + 1 WHERE id = $1', [1 + ((i * 7919) % 5000000)]],
  },
  update_body: {
    event: 'UPDATE',
    modes: ['none', 'empty', 'cap1'],
    sql: (i) => ['UPDATE comments SET body = $2 WHERE id = $1', [1 + ((i * 7919) % 5000000), 'y' + (i % 7)]],
  },
};
const rounds = Number(process.env.ROUNDS ?? 3);
const results = {};
for (let r = 0; r < rounds; r++) {
  for (const [name, w] of Object.entries(workloads)) {
    for (const mode of w.modes) {
      setmode(mode, w.event);
      const c = new pg.Client(url);
      await c.connect();
      await c.query('SET synchronous_commit = off');
      const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
      for (let i = 0; i < 200; i++) await c.query(...w.sql(i + 999983)); // warm the plan caches
      const t0 = ticks(pid);
      for (let i = 0; i < N; i++) await c.query(...w.sql(i + r * N));
      const us = ((ticks(pid) - t0) * 10000) / N;
      await c.end();
      (results[`${name} ${mode}`] ??= []).push(us);
    }
  }
}
setmode('none', 'INSERT');
for (const [k, v] of Object.entries(results))
  console.log(`${k.padEnd(20)} backend CPU per statement (µs): ${v.map((x) => x.toFixed(0)).join(' ')}`);
