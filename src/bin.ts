#!/usr/bin/env node
import { main, ExitCode } from './cli.js';
import { describeError } from './db/errors.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mvrefresh: ${describeError(err)}\n`);
    process.exitCode = ExitCode.failed;
  },
);
