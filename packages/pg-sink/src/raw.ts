import {
  ASCII_WHITESPACE,
  asciiLower,
  type Condition,
  charClass,
  type RawCsv,
  type TextRule,
} from '@tributary/core';
import type { StageInput } from './apply.js';

/**
 * Compiles a raw batch's declarative steps (core's `skipRows`, `cleanText`, `dropFields`,
 * `rename`) into SQL over the staging table, so the pass-through path gives the same rows as
 * running the transforms in JavaScript. Values travel as parameters, never as SQL text.
 */
export function compileRaw(raw: RawCsv): StageInput & { columns: string[] } {
  const params: unknown[] = [];
  const paramTypes: string[] = [];
  const param = (value: unknown, type: string) => {
    params.push(value);
    paramTypes.push(type);
    return `$${params.length}::${type}`;
  };
  let current = new Map<string, string>(raw.header.map((name, i) => [name, `s.c${i}`]));
  const filters: Array<{ name: string; drops: string }> = [];
  for (const step of raw.steps) {
    switch (step.op) {
      case 'drop-fields':
        for (const field of step.fields) current.delete(field);
        break;
      case 'rename': {
        const renamed = new Map<string, string>();
        for (const [name, sql] of current)
          renamed.set(Object.hasOwn(step.mapping, name) ? step.mapping[name]! : name, sql);
        current = renamed;
        break;
      }
      case 'text':
        for (const [column, rule] of Object.entries(step.rules)) {
          const sql = current.get(column);
          if (sql !== undefined) current.set(column, textSql(sql, rule, param));
        }
        break;
      case 'skip-rows': {
        // A column the batch does not have never matches (as in JavaScript).
        const sql = current.get(step.when.column);
        if (sql !== undefined) filters.push({ name: step.name, drops: conditionSql(sql, step.when, param) });
        break;
      }
    }
  }
  return {
    columns: [...current.keys()],
    stageColumns: raw.header.length,
    expressions: current,
    filters,
    params,
    paramTypes,
    csv: { emptyAsNull: raw.emptyAsNull },
  };
}

type Param = (value: unknown, type: string) => string;

function textSql(sql: string, rule: TextRule, param: Param): string {
  let out = sql;
  if (rule.trim) out = `btrim(${out}, ${param(ASCII_WHITESPACE, 'text')})`;
  // ASCII letters only (the C collation), as in JavaScript: the same on every database.
  if (rule.case === 'upper') out = `upper(${out} COLLATE "C")`;
  else if (rule.case === 'lower') out = `lower(${out} COLLATE "C")`;
  if (rule.collapse) {
    // In a replacement, PostgreSQL reads `\` as an escape (`\1`, `\&`): a literal one is doubled.
    const into = rule.collapse.into.replaceAll('\\', '\\\\');
    out = `regexp_replace(${out}, ${param(charClass(rule.collapse.chars), 'text')}, ${param(into, 'text')}, 'g')`;
  }
  if (rule.emptyToNull) out = `nullif(${out}, '')`;
  return out;
}

function conditionSql(sql: string, when: Condition, param: Param): string {
  if ('startsWith' in when) return `coalesce(starts_with(${sql}, ${param(when.startsWith, 'text')}), false)`;
  let value = sql;
  if (when.trim) value = `btrim(${value}, ${param(ASCII_WHITESPACE, 'text')})`;
  if (when.ignoreCase) value = `lower(${value} COLLATE "C")`;
  const values = when.ignoreCase ? when.oneOf.map(asciiLower) : [...when.oneOf];
  return `coalesce(${value} = ANY(${param(values, 'text[]')}), false)`;
}

/**
 * The input line a COPY error's `where` names (`COPY …, line 12, …`). PostgreSQL counts physical
 * lines there, line breaks inside quoted fields included, from the batch's first line.
 */
export function copyErrorLine(raw: RawCsv, where: string | undefined): number | undefined {
  const match = /\bline (\d+)/.exec(where ?? '');
  return match ? raw.line(0) + Number(match[1]) - 1 : undefined;
}
