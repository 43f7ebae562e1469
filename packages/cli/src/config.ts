import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { extractProblems, semanticProblems } from './config-checks.js';
import {
  configSchema,
  type ExtractStreamConfig,
  extractStreamSchema,
  streamSchema,
  type TributaryConfig,
} from './config-schema.js';
import { UsageError } from './env.js';

/**
 * Reading a `tributary` config file: YAML or JSON, `${VAR}` expanded, validated by the schema
 * (config-schema.ts) and the checks it cannot express (config-checks.ts), every problem named by
 * its path (`streams[1].target.key`).
 */

/** A config problem, with the option path (`streams[1].target.key`). */
export class ConfigError extends UsageError {
  constructor(
    readonly file: string,
    readonly problems: { path: string; message: string }[],
  ) {
    super(`${file}: invalid config:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
  }
}

function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : `${out ? '.' : ''}${String(part)}`;
  return out || '(root)';
}

/** Replaces `${VAR}` in every string with the environment's value; a missing one is an error. */
export function expandEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: PropertyKey[] = [],
  problems: { path: string; message: string }[] = [],
): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name];
      if (found === undefined) {
        problems.push({ path: pathText(path), message: `environment variable ${name} is not set` });
        return '';
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, [...path, i], problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, [...path, k], problems)]),
    );
  }
  return value;
}

/** Parses and validates config text (YAML, or JSON for a `.json` file). Throws ConfigError. */
export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): TributaryConfig {
  let raw: unknown;
  try {
    raw = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ConfigError(file, [{ path: '(file)', message: (error as Error).message.split('\n')[0]! }]);
  }
  const problems: { path: string; message: string }[] = [];
  const expanded = expandEnv(raw, env, [], problems);
  const { loads, extracts, loadIndex } = splitStreams(expanded);
  // Only extract streams: the load streams may then be none.
  const schema = extracts.length ? configSchema.extend({ streams: z.array(streamSchema) }) : configSchema;
  // Parsed once per process: compiling zod's fast path would cost more than it saves.
  const parsed = schema.safeParse(loads, { jitless: true });
  // A value left empty by a missing variable is already reported: not twice.
  const reported = new Set(problems.map((p) => p.path));
  const report = (path: PropertyKey[], message: string) => {
    const text = pathText(path);
    if (!reported.has(text)) problems.push({ path: text, message });
  };
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = [...issue.path];
      // Back to the entry's index in the file's `streams`.
      if (path[0] === 'streams' && typeof path[1] === 'number') path[1] = loadIndex[path[1]]!;
      report(path, issue.message);
    }
  }
  const parsedExtracts: ExtractStreamConfig[] = [];
  for (const { index, entry } of extracts) {
    const one = extractStreamSchema.safeParse(entry, { jitless: true });
    if (one.success) parsedExtracts.push(one.data);
    else for (const issue of one.error.issues) report(['streams', index, ...issue.path], issue.message);
  }
  if (problems.length || !parsed.success) throw new ConfigError(file, problems);
  const config: TributaryConfig = { ...parsed.data, extracts: parsedExtracts };
  problems.push(...semanticProblems(config, env), ...extractProblems(config, env, extracts));
  if (problems.length) throw new ConfigError(file, problems);
  return config;
}

const isExtractEntry = (entry: unknown): boolean => {
  const source = (entry as { source?: unknown } | null)?.source;
  return typeof source === 'object' && source !== null && 'postgres' in source;
};

/** The file's `streams` entries split into load and extract streams, with their file indices. */
function splitStreams(expanded: unknown): {
  loads: unknown;
  extracts: { index: number; entry: unknown }[];
  loadIndex: number[];
} {
  const streams = (expanded as { streams?: unknown } | null)?.streams;
  if (!Array.isArray(streams)) return { loads: expanded, extracts: [], loadIndex: [] };
  const extracts: { index: number; entry: unknown }[] = [];
  const loadIndex: number[] = [];
  const loads: unknown[] = [];
  streams.forEach((entry, index) => {
    if (isExtractEntry(entry)) extracts.push({ index, entry });
    else {
      loadIndex.push(index);
      loads.push(entry);
    }
  });
  return { loads: { ...(expanded as object), streams: loads }, extracts, loadIndex };
}

export async function loadConfig(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TributaryConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(
      `--config ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  return parseConfig(text, file, env);
}
