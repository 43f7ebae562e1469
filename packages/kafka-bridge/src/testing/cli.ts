/**
 * `pnpm kafka:broker [--port N] [--host H] [--partitions N] [--verbose]`: runs the test broker
 * standalone until SIGINT/SIGTERM. Port defaults to Kafka's 9092; `--port 0` picks a free one
 * (read it from the `listening on <host>:<port>` line).
 */
import { parseArgs } from 'node:util';
import { startTestBroker } from './broker.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9092' },
    host: { type: 'string', default: '127.0.0.1' },
    partitions: { type: 'string', default: '1' },
    verbose: { type: 'boolean', default: false },
  },
  strict: true,
});

function integerOption(name: string, text: string, min: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > 65535) {
    process.stderr.write(`--${name} must be an integer from ${min} to 65535, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return value;
}

const broker = await startTestBroker({
  port: integerOption('port', values.port, 0),
  host: values.host,
  defaultPartitions: integerOption('partitions', values.partitions, 1),
  ...(values.verbose ? { log: (line: string) => process.stderr.write(`${line}\n`) } : {}),
}).catch((error: unknown) => {
  const code = (error as NodeJS.ErrnoException).code;
  const hint = code === 'EADDRINUSE' ? ' (port in use: pass --port N, or --port 0 for a free one)' : '';
  process.stderr.write(`cannot start the test broker: ${(error as Error).message}${hint}\n`);
  process.exit(1);
});
process.stdout.write(`listening on ${broker.brokers[0]}\n`);

let stopping = false;
const shutdown = () => {
  if (stopping) return;
  stopping = true;
  broker.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`stop failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
