#!/usr/bin/env node
import { main, ExitCode } from './cli.js';
import { describeError } from './db/errors.js';

/**
 * A reader that went away (`mvrefresh status | head -1`) is not a failure: the output nobody reads is
 * dropped and the command ends quietly with 0. Any other error of the standard streams ends it with 1.
 */
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (err: NodeJS.ErrnoException) => {
    process.exit(err.code === 'EPIPE' ? ExitCode.ok : ExitCode.failed);
  });

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mvrefresh: ${describeError(err)}\n`);
    process.exitCode = ExitCode.failed;
  },
);
