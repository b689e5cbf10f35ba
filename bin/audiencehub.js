#!/usr/bin/env node
// The sources are TypeScript run as they are: tsx compiles them on load, so no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/index.ts');
process.exitCode = await main(process.argv.slice(2));
