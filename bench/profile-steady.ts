/**
 * CPU profile of the built binary applying many small files (the steady section's first case):
 *
 *   node --conditions=@tributary/source --import tsx bench/profile-steady.ts [--files 400] [--top 25]
 *
 * Stages the 500-row baseline and `--files` three-row deltas, runs `node --cpu-prof
 * examples/tickets/bin/tickets-pipeline.js run --apply --dataset inc --json` once on them and
 * prints where its CPU time went: the functions with the most self time, and self time by
 * package. Needs `pnpm build`. Uses DATABASE_URL / S3_ENDPOINT or embedded services.
 */
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runNode, TICKETS_BUILT, ticketsEnv } from './lib/cli.js';
import { changeKey, ensureBucket, putObjects } from './lib/data.js';
import { startServices } from './lib/services.js';
import { smallStream } from './sections/steady.js';

const { values } = parseArgs({
  options: { files: { type: 'string', default: '400' }, top: { type: 'string', default: '25' } },
});

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a script belongs: a package under node_modules, a workspace package, or Node itself. */
function owner(url: string): string {
  if (!url) return '(native / VM)';
  if (url.startsWith('node:')) return 'node: internals';
  const modules = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1]!;
  const workspace = /\/(packages\/[^/]+|examples\/[^/]+)\//.exec(url);
  return workspace ? workspace[1]! : url;
}

function summarise(profile: CpuProfile, top: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  const byOwner = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!;
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    const name = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*node_modules\//, '')}:${frame.lineNumber + 1}`;
    self.set(name, (self.get(name) ?? 0) + us);
    const group = frame.functionName.startsWith('(') ? frame.functionName : owner(frame.url);
    byOwner.set(group, (byOwner.get(group) ?? 0) + us);
  });
  const rows = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(
        ([k, us]) =>
          `${(us / 1000).toFixed(0).padStart(7)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`,
      )
      .join('\n');
  return `profiled ${(total / 1000).toFixed(0)} ms\n\nself time by package:\n${rows(byOwner, 15)}\n\ntop ${top} functions by self time:\n${rows(self, top)}\n`;
}

const services = await startServices((line) => process.stderr.write(`${line}\n`));
try {
  const prefix = `bench/profile-steady/${Date.now().toString(36)}`;
  const { files } = smallStream(Number(values.files));
  await ensureBucket(services.s3Client, 'bench');
  await putObjects(
    services.s3Client,
    'bench',
    files.map((f) => ({ key: changeKey(prefix, 'inc', f.stamp), body: f.body })),
  );
  const dir = await mkdtemp(join(tmpdir(), 'tributary-profile-'));
  const run = await runNode(
    ['--cpu-prof', '--cpu-prof-dir', dir, ...TICKETS_BUILT, 'run', '--apply', '--dataset', 'inc', '--json'],
    { env: ticketsEnv(services, prefix), what: 'tickets-pipeline run --apply' },
  );
  const [file] = await readdir(dir);
  process.stdout.write(
    `${files.length} files in ${Math.round(run.ms)} ms wall (${(run.ms / files.length).toFixed(1)} ms per file); profile ${join(dir, file!)}\n`,
  );
  process.stdout.write(
    summarise(JSON.parse(await readFile(join(dir, file!), 'utf8')) as CpuProfile, Number(values.top)),
  );
} finally {
  await services.stop();
}
