/** The repository's root, for files the tests read; its own module so that code run outside vitest (bench/scale.ts) can import the helpers that need it. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
