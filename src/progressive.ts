#!/usr/bin/env node
// `node dist/progressive.js [options]` = `rapm progressive [options]`.
import { main } from './cli/main.js';

process.exitCode = await main(['progressive', ...process.argv.slice(2)]);
