import type pg from 'pg';
import type { BenchConfig } from '../run.js';
import type { Services } from './services.js';

export interface BenchContext {
  config: BenchConfig;
  services: Services;
  pool: pg.Pool;
  log: (line: string) => void;
}
