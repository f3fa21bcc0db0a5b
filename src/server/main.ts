#!/usr/bin/env node
/** Entry point: `npm start` / the container's command. */
import { ConfigError, loadConfig } from '../config/load.js';
import { createLogger, type Logger } from './logger.js';
import { startServer } from './server.js';

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig(process.env);
  } catch (err) {
    // One line that names the key, then a non-zero exit.
    process.stderr.write(`mesh-guard: ${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const { config, file } = loaded;
  const log = createLogger(config.logLevel);
  let server;
  try {
    server = await startServer({ config, log, configFile: file });
  } catch (err) {
    log.fatal({ error: err instanceof Error ? err.message : String(err) }, 'failed to start');
    exitAfterFlush(log, 1);
    return;
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'signal received');
    server.shutdown().then(
      () => exitAfterFlush(log, 0),
      () => exitAfterFlush(log, 1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.on('uncaughtException', (err) => {
    log.fatal({ error: err.message }, 'uncaught exception');
    exitAfterFlush(log, 1);
  });
}

/** Exits once every log line is out; a stdout that never drains does not hold the exit up for long. */
function exitAfterFlush(log: Logger, code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 1_000).unref();
  log.flush(() => process.exit(code));
}

void main();
