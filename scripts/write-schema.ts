/**
 * Writes docs/trace.schema.json, the published JSON Schema of `podwalk trace --json` traces,
 * from the zod schemas in src/render/json.ts. `npm run schema`; test/json-schema.test.ts checks
 * that the file is up to date.
 */
import { writeFileSync } from 'node:fs';
import { traceJsonSchema } from '../src/render/json.ts';

export const SCHEMA_FILE = new URL('../docs/trace.schema.json', import.meta.url);

export function schemaText(): string {
  return JSON.stringify(traceJsonSchema(), null, 2) + '\n';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(SCHEMA_FILE, schemaText());
  process.stdout.write(`wrote ${SCHEMA_FILE.pathname}\n`);
}
