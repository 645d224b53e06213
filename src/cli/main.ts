#!/usr/bin/env node
/** The podwalk executable from the sources (`node --import tsx src/cli/main.ts …`): process.ts's main. */
import { main } from './process.ts';

await main();
