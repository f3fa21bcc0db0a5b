#!/usr/bin/env node
/** Entry point: `npm start` / the container's command. */
import { ConfigError, loadConfig } from '../config/load.js';
import { createLogger } from './logger.js';
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
    log.flush();
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 100).unref();
    return;
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'signal received');
    server.shutdown().then(
      () => {
        log.flush();
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.on('uncaughtException', (err) => {
    log.fatal({ error: err.message }, 'uncaught exception');
    log.flush();
    process.exit(1);
  });
}

void main();
