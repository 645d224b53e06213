/** A usage or input error: one line on stderr, exit 2 */
export class UsageError extends Error {}
