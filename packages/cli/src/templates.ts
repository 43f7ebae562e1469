import { ConfigError } from './config.js';
import { semanticProblems, streamSpaces } from './config-checks.js';
import type { StreamConfig, TributaryConfig } from './config-schema.js';

/** Seed 002's layouts: one template stream becomes a stream per table folder found in S3. */

/** The table folders right under `under` (one level, `/`-delimited), sorted. */
export async function discoverTables(
  list: (continuationToken: string | undefined) => Promise<{ prefixes: string[]; next: string | undefined }>,
  under: string,
): Promise<string[]> {
  const tables: string[] = [];
  let token: string | undefined;
  do {
    const page = await list(token);
    for (const prefix of page.prefixes) {
      const name = prefix.slice(under.length).replace(/\/$/, '');
      if (/^[A-Za-z0-9_.-]+$/.test(name)) tables.push(name);
    }
    token = page.next;
  } while (token);
  return tables.sort();
}

/**
 * The config with every discover template replaced by one stream per table folder found. Table
 * folders an explicit stream already reads are left to it; the expanded config is checked again
 * for overlaps (ConfigError naming both streams).
 */
export function expandTemplates(
  config: TributaryConfig,
  tablesByTemplate: ReadonlyMap<number, readonly string[]>,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): TributaryConfig {
  const explicit = config.streams.filter((s) => !s.discover);
  const claimed = explicit.map((s) => streamSpaces(s, env));
  const streams: StreamConfig[] = [];
  for (const [i, stream] of config.streams.entries()) {
    if (!stream.discover) {
      streams.push(stream);
      continue;
    }
    const { discover, ...template } = stream;
    for (const table of tablesByTemplate.get(i) ?? []) {
      const prefix = `${discover.under}${table}/`;
      const bucket = stream.source.bucket ?? env.S3_BUCKET ?? '';
      if (
        claimed.some(
          (c) => c.bucket === bucket && c.listing.some((l) => l.startsWith(prefix) || prefix.startsWith(l)),
        )
      )
        continue;
      const fill = (text: string) => text.replaceAll('{table}', table);
      streams.push({
        ...template,
        id: fill(template.id),
        source: { ...template.source, prefix },
        target: { ...template.target, table: fill(template.target.table) },
      });
    }
  }
  const expanded = { ...config, streams };
  const problems = semanticProblems(expanded, env);
  if (problems.length) throw new ConfigError(file, problems);
  return expanded;
}
