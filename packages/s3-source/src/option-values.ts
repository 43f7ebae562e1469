import { z } from 'zod';

/**
 * Value shapes shared by the s3 stage option schemas. Their messages say what is expected and
 * what came, e.g. `streams[0].prefix: must be a folder like … (ending in '/'), got "x"`.
 */

export const got = (input: unknown) => JSON.stringify(input);

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const allowed = values.map((v) => `'${v}'`).join(', ');
  return z.enum(values, { error: (issue) => `must be one of ${allowed}, got ${got(issue.input)}` });
}

export function integerFrom(min: number) {
  const error = (issue: { input?: unknown }) => `must be an integer ≥ ${min}, got ${got(issue.input)}`;
  return z.number({ error }).int({ error }).min(min, { error });
}

export const flag = () => z.boolean({ error: (issue) => `must be true or false, got ${got(issue.input)}` });

export const nonEmptyString = (message: string) =>
  z.string({ error: message }).refine((value) => value.trim() !== '', { message });

/** A folder key: ends in `/`, never starts with one; the bucket root (`''`) only where allowed. */
export function folder(allowRoot: boolean) {
  return z
    .string({ error: (issue) => `must be a string, got ${got(issue.input)}` })
    .superRefine((value, ctx) => {
      if (value === '' && allowRoot) return;
      if (value === '' || !value.endsWith('/') || value.startsWith('/')) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a folder like 'automations/inc/changes/' (ending in '/'), got ${got(value)}`,
        });
      }
    });
}
