// `node scripts/pnpm-self.mjs <args>`: runs the pnpm that is running this package script again
// with <args>. pnpm hands its own path to scripts in `npm_execpath`, so the workspace's scripts
// (build, prepare) also work where `pnpm` is not on PATH, e.g. `corepack pnpm install` without
// `corepack enable`. Outside a pnpm script it falls back to `pnpm` on PATH.
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const self = process.env.npm_execpath;
const [command, commandArgs] = !self
  ? ['pnpm', args]
  : /\.[cm]?js$/.test(self)
    ? [process.execPath, [self, ...args]]
    : [self, args];
const result = spawnSync(command, commandArgs, {
  stdio: 'inherit',
  shell: !self && process.platform === 'win32',
});
if (result.error) {
  process.stderr.write(`pnpm-self: could not start ${command}: ${result.error.message}\n`);
  process.exit(1);
}
process.exit(result.status ?? 1);
