// API reports (API Extractor): one `api/<entry>.api.md` per published entry point of every public
// package, generated from the built `.d.ts`, so a change to the public surface shows in review.
//   pnpm api:report   rewrite the reports after `pnpm build` (commit them with the change)
//   pnpm api:check    fail when a report differs from the built declarations (CI)
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Extractor, ExtractorConfig } from '@microsoft/api-extractor';

const root = resolve(import.meta.dirname, '..');
const update = process.argv.includes('--update');
export const PUBLIC_PACKAGES = [
  'packages/core',
  'packages/s3-source',
  'packages/pg-sink',
  'packages/pg-source',
  'packages/kafka-bridge',
  'packages/cli',
  'examples/tickets',
];

let failed = 0;
for (const dir of PUBLIC_PACKAGES) {
  const folder = join(root, dir);
  const manifest = JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8'));
  // The published entry points: publishConfig.exports (types first, no workspace condition).
  const exports = manifest.publishConfig?.exports ?? manifest.exports;
  for (const [subpath, conditions] of Object.entries(exports)) {
    const entry = join(folder, conditions.types);
    const name = subpath === '.' ? 'index' : subpath.slice(2).replaceAll('/', '-');
    if (!existsSync(entry)) {
      console.error(`api-report: ${dir}: ${conditions.types} is missing: run \`pnpm build\` first`);
      failed++;
      continue;
    }
    if (update) mkdirSync(join(folder, 'api'), { recursive: true });
    const config = ExtractorConfig.prepare({
      configObject: {
        projectFolder: folder,
        mainEntryPointFilePath: entry,
        compiler: { tsconfigFilePath: join(folder, 'tsconfig.build.json') },
        apiReport: {
          enabled: true,
          reportFileName: `${name}.api.md`,
          reportFolder: join(folder, 'api'),
          reportTempFolder: join(tmpdir(), 'tributary-api-report', dir),
        },
        newlineKind: 'lf',
        docModel: { enabled: false },
        dtsRollup: { enabled: false },
        tsdocMetadata: { enabled: false },
        messages: {
          compilerMessageReporting: { default: { logLevel: 'warning' } },
          // Release tags and TSDoc style are not policed; a type that the API uses but no entry
          // point exports is written into the report, where review sees it.
          extractorMessageReporting: {
            default: { logLevel: 'none', addToApiReportFile: false },
            'ae-forgotten-export': { logLevel: 'none', addToApiReportFile: true },
          },
          tsdocMessageReporting: { default: { logLevel: 'none' } },
        },
      },
      configObjectFullPath: join(folder, 'api-extractor.json'),
      packageJsonFullPath: join(folder, 'package.json'),
    });
    const result = Extractor.invoke(config, {
      localBuild: update,
      messageCallback: (message) => {
        // API Extractor's own chatter (bundled TypeScript version, "report changed") is summed up below.
        if (message.category === 'console' && process.env.API_REPORT_VERBOSE === undefined)
          message.handled = true;
      },
    });
    const report = `${dir}/api/${name}.api.md`;
    if (!result.succeeded || (!update && result.apiReportChanged)) {
      failed++;
      console.error(
        result.apiReportChanged && !update
          ? `api-report: ${report} is out of date: the public API of ${manifest.name}${subpath === '.' ? '' : subpath.slice(1)} changed. Run \`pnpm build && pnpm api:report\` and commit the report.`
          : `api-report: ${report}: API Extractor failed (${result.errorCount} errors)`,
      );
    } else if (update && result.apiReportChanged) {
      console.log(`api-report: updated ${report}`);
    }
  }
}
if (failed > 0) process.exit(1);
console.log(`api-report: ${update ? 'reports written' : 'every report matches the built declarations'}`);
