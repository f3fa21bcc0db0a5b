import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError, configSchema, isPlainObject, type Config } from './schema.js';

export { ConfigError, type Config } from './schema.js';

/** Env overrides for the common knobs; they win over the file. */
const ENV_OVERRIDES: ReadonlyArray<readonly [string, string, (raw: string) => unknown]> = [
  ['PORT', 'server.port', (v) => (/^[0-9]+$/.test(v) ? Number(v) : v)],
  ['DRY_RUN', 'dryRun', (v) => (v === 'true' ? true : v === 'false' ? false : v)],
  ['LOG_LEVEL', 'logLevel', (v) => v],
  ['TLS_CERT_FILE', 'server.tls.certFile', (v) => v],
  ['TLS_KEY_FILE', 'server.tls.keyFile', (v) => v],
];

/** Parses YAML text, applies env overrides, validates. Throws ConfigError with the key. */
export function parseConfig(text: string, env: NodeJS.ProcessEnv = {}, source = 'config'): Config {
  let raw: unknown;
  try {
    // maxAliasCount guards against "billion laughs" alias expansion in a hostile file.
    raw = text.trim() === '' ? {} : parseYaml(text, { maxAliasCount: 100, uniqueKeys: true });
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new ConfigError(source, `not valid YAML: ${msg}`);
  }
  if (raw === null || raw === undefined) raw = {};
  if (!isPlainObject(raw)) throw new ConfigError(source, 'the top level must be a map');
  const tree = structuredClone(raw);
  for (const [name, path, convert] of ENV_OVERRIDES) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    setPath(tree, path, convert(value), name);
  }
  try {
    return configSchema.parse(tree, '');
  } catch (err) {
    if (err instanceof ConfigError) {
      const fromEnv = ENV_OVERRIDES.find(([name, path]) => path === err.key && env[name]);
      if (fromEnv) throw new ConfigError(`${fromEnv[0]} (${err.key})`, err.message.replace(/^config: [^:]+: /, ''));
    }
    throw err;
  }
}

function setPath(tree: Record<string, unknown>, path: string, value: unknown, envName: string): void {
  const parts = path.split('.');
  let node = tree;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (next === undefined || next === null) node[part] = {};
    else if (!isPlainObject(next)) throw new ConfigError(parts.join('.'), `cannot apply ${envName}: parent is not a map`);
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

/** Reads CONFIG_FILE (if set) and the env overrides. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): { config: Config; file: string | undefined } {
  const file = env.CONFIG_FILE || undefined;
  let text = '';
  if (file) {
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError('CONFIG_FILE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
  }
  return { config: parseConfig(text, env, file ?? 'config'), file };
}

export interface ConfigWatcher {
  close(): void;
}

/**
 * Polls the config file for changes. A ConfigMap volume update swaps a `..data` symlink,
 * which fs.watch on the file misses; polling the resolved content is simple and reliable.
 */
export function watchConfig(
  file: string,
  env: NodeJS.ProcessEnv,
  intervalMs: number,
  onChange: (result: { config: Config } | { error: Error }) => void,
): ConfigWatcher {
  let last = safeRead(file);
  const timer = setInterval(() => {
    const text = safeRead(file);
    if (text === last) return;
    last = text;
    if (text === undefined) {
      onChange({ error: new ConfigError('CONFIG_FILE', `cannot read ${file}`) });
      return;
    }
    try {
      onChange({ config: parseConfig(text, env, file) });
    } catch (err) {
      onChange({ error: err as Error });
    }
  }, intervalMs);
  timer.unref();
  return { close: () => clearInterval(timer) };
}

function safeRead(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
