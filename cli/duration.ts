import { InvalidArgumentError } from 'commander';

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * A duration as the CLI takes it (`--expires`): a whole number and one unit, `30m`, `12h`, `7d`.
 * Nothing else is accepted (no `1.5h`, no `7 d`, no `1d12h`, no zero), so a typo never becomes
 * some other expiry. At most 100 years.
 */
export function parseDuration(value: string): number {
  const m = /^([1-9][0-9]{0,5})([mhd])$/.exec(value);
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : NaN;
  if (!(ms <= 36_525 * UNIT_MS.d)) throw new InvalidArgumentError(`not a duration: "${value}" (a whole number and m, h or d: 30m, 12h, 7d)`);
  return ms;
}
