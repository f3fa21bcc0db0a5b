/**
 * Shared plumbing for the `mesh-guard` CLI: I/O seam (so tests run commands in-process),
 * the one error type that becomes one line on stderr, argument parsing with node:util
 * parseArgs, config loading and plain-text tables.
 */
import fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, parseConfig, type Config } from '../config/load.js';

export const EXIT_OK = 0;
/** Findings: preview --fail-on-change with changes, audit risks, doctor failures. */
export const EXIT_FINDINGS = 1;
/** Usage or input errors: bad flags, unreadable file, bad YAML, unreachable cluster, missing RBAC. */
export const EXIT_USAGE = 2;

export interface CliIO {
  /** Writes to stdout (the report). */
  out(text: string): void;
  /** Writes to stderr (errors, notes, progress). */
  err(text: string): void;
  readStdin(): Promise<string>;
  readonly env: NodeJS.ProcessEnv;
  /** The clock, for certificate expiry (tests pin it). */
  now(): Date;
}

/** An expected failure: printed as `mesh-guard: <message>` on stderr, never with a stack trace. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT_USAGE) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * parseArgs with the error turned into a CliError that names the command. `--help` is
 * handled by the caller (a `help` boolean must be in `options`).
 */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(command: string, args: readonly string[], options: T) {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    throw new CliError(`${command}: ${msg.replace(/\. To specify a positional argument.*$/, '')} (see mesh-guard ${command} --help)`);
  }
}

export function rejectPositionals(command: string, positionals: readonly string[]): void {
  if (positionals.length) throw new CliError(`${command}: unexpected argument ${JSON.stringify(positionals[0])} (see mesh-guard ${command} --help)`);
}

export type OutputFormat = 'table' | 'json' | 'yaml';

export function outputFormat(command: string, value: string | undefined, allowed: readonly OutputFormat[]): OutputFormat {
  const v = value ?? 'table';
  if (!(allowed as readonly string[]).includes(v)) {
    throw new CliError(`${command}: -o must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as OutputFormat;
}

/** Reads and validates a mesh-guard config file (the same schema the webhook uses); no env overrides. */
export function loadConfigFile(file: string | undefined): Config {
  if (!file) return parseConfig('', {});
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read config file ${file}: ${errnoText(err)}`);
  }
  try {
    return parseConfig(text, {}, file);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
}

export function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && typeof e.code === 'string') {
    const why: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'is a directory' };
    return why[e.code] ?? e.code;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * A plain-text table: columns padded to the widest cell, the last column unpadded so long
 * reasons do not push trailing spaces. Cells are single-line.
 */
export function renderTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const clean = (s: string) => s.replace(/\s*\n\s*/g, ' ');
  const all = [header.map(clean), ...rows.map((r) => r.map(clean))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? '')].length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell + ' '.repeat(widths[i]! - [...cell].length)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n') + '\n';
}

export const q = JSON.stringify;

/** Indents every non-empty line. */
export function indent(text: string, prefix = '  '): string {
  return text.replace(/^(?=.)/gm, prefix);
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** An in-memory CliIO (tests, embedding): collects stdout/stderr, serves `stdin`. */
export function memoryIO(opts: { stdin?: string; env?: NodeJS.ProcessEnv; now?: Date } = {}): CliIO & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    readStdin: async () => opts.stdin ?? '',
    env: opts.env ?? {},
    now: () => opts.now ?? new Date(),
    stdout: () => out,
    stderr: () => err,
  };
}
