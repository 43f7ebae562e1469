import type { LatePolicy } from '@tributary/cli';
import { InvalidArgumentError } from 'commander';
import { DATASETS, type Dataset } from './tickets.js';

/**
 * The command line's values, parsed once by commander (`.argParser`): a bad value is a usage
 * error (exit 2) naming the option, and every handler gets typed flags.
 */

export function positiveNumber(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`must be a positive number, got ${JSON.stringify(text)}`);
  return n;
}

export function positiveInteger(text: string): number {
  const n = positiveNumber(text);
  if (!Number.isInteger(n))
    throw new InvalidArgumentError(`must be a whole number, got ${JSON.stringify(text)}`);
  return n;
}

export function parseDatasets(text: string): Dataset[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw new InvalidArgumentError('needs at least one of: inc, crq');
  for (const name of names) {
    if (!(DATASETS as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(
        `unknown dataset ${JSON.stringify(name)} (expected inc, crq or inc,crq)`,
      );
    }
  }
  return [...new Set(names)] as Dataset[];
}

/** For commands that work on exactly one dataset. */
export function oneDataset(text: string): Dataset {
  const [dataset, ...more] = parseDatasets(text);
  if (!dataset || more.length) throw new InvalidArgumentError('takes one dataset');
  return dataset;
}

export function brokerList(text: string): string[] {
  const brokers = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!brokers.length || brokers.some((b) => !/^[^:\s]+:\d+$/.test(b))) {
    throw new InvalidArgumentError(`must be host:port[,host:port…], got ${JSON.stringify(text)}`);
  }
  return brokers;
}

interface Output {
  json?: boolean;
}

export interface RunFlags extends Output {
  dataset: Dataset[];
  apply?: boolean;
  watch?: boolean;
  /** Seconds. */
  interval: number;
  lateFiles: LatePolicy;
  metricsPort?: number;
  concurrency: number;
}

export interface StatusFlags extends Output {
  dataset: Dataset[];
}

export interface ReplayFlags extends Output {
  dataset: Dataset[];
  from: string;
  apply?: boolean;
}

export interface GenerateFlags extends Output {
  out?: string;
  s3?: boolean;
  seed: number;
  scale: number;
}

export interface DemoFlags extends Output {
  keep?: boolean;
  scale: number;
}

export interface PublishFlags extends Output {
  dataset: Dataset;
  brokers: string[];
  topic?: string;
  partitions: number;
  replicationFactor?: number;
  apply?: boolean;
  lateFiles: LatePolicy;
}

export interface SubscribeFlags extends Output {
  dataset: Dataset;
  brokers: string[];
  topic: string;
  group: string;
  exitWhenIdle?: boolean;
}

export interface ArchiveFlags extends Output {
  brokers: string[];
  topic: string;
  to: string;
  maxRecords: number;
  /** Seconds. */
  maxAge: number;
  group?: string;
  exitWhenIdle?: boolean;
}
