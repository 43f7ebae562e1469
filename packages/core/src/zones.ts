let canonical: ReadonlySet<string> | undefined;

/**
 * True when `timeZone` is an IANA zone name (or `UTC`) this runtime knows. The canonical list
 * answers in ~2 ms; only other spellings (aliases such as `Asia/Calcutta`) build a
 * DateTimeFormat, whose first construction costs 20–70 ms of ICU set-up — which a run with
 * nothing to apply (a cron tick) would otherwise pay just to validate its options.
 */
export function isTimeZone(timeZone: string): boolean {
  canonical ??= new Set([...Intl.supportedValuesOf('timeZone'), 'UTC']);
  if (canonical.has(timeZone)) return true;
  try {
    new Intl.DateTimeFormat('en', { timeZone });
    return true;
  } catch {
    return false;
  }
}
