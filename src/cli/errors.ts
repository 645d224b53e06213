/** A usage or input error: one line on stderr, exit 2 */
export class UsageError extends Error {}

/**
 * The parser of an option that names something: an empty argument (`--from ''`) is an error, never
 * the same as leaving the option out
 */
export function named(option: string): (v: string) => string {
  return (v) => {
    if (v === '') throw new UsageError(`${option}: an empty name`);
    return v;
  };
}
