#!/usr/bin/env node
/**
 * The `mesh-guard` command: preview (manifests, offline), audit (a live cluster, read-only),
 * doctor (the installation). `run()` takes its I/O as a parameter so tests run it in-process;
 * the bottom of this file wires it to the real process when run as a program.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError, EXIT_OK, EXIT_USAGE, type CliIO } from './common.js';

export const MAIN_HELP = `Usage: mesh-guard <command> [flags]

Commands:
  preview   show what the webhook would change in manifests (offline, no cluster)
  audit     find pods at risk in a live cluster, and pods the webhook would change (read-only)
  doctor    check the mesh-guard installation: webhook order, settings, certificate, Istio/Dynatrace setup

Run "mesh-guard <command> --help" for the flags and examples of each command.

Examples:
  mesh-guard preview -f deploy.yaml -n shop --namespace-label istio-injection=enabled
  mesh-guard audit -n shop -o json
  mesh-guard doctor

Exit codes: 0 ok; 1 findings (changes with --fail-on-change, audit risks, doctor failures);
2 usage or input errors (bad flags, unreadable file, bad YAML, unreachable cluster, missing RBAC).
`;

/** Loaded on demand: audit and doctor pull in @kubernetes/client-node, which preview does not need. */
const COMMANDS: Record<string, (args: readonly string[], io: CliIO) => Promise<number>> = {
  preview: async (args, io) => (await import('./preview.js')).previewCommand(args, io),
  audit: async (args, io) => (await import('./audit.js')).auditCommand(args, io),
  doctor: async (args, io) => (await import('./doctor.js')).doctorCommand(args, io),
};

export async function run(argv: readonly string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      if (command === 'help' && rest[0] && Object.hasOwn(COMMANDS, rest[0])) return await COMMANDS[rest[0]]!(['--help'], io);
      io.out(MAIN_HELP);
      return command === undefined ? EXIT_USAGE : EXIT_OK;
    }
    if (command === '--version' || command === 'version') {
      io.out(`${version()}\n`);
      return EXIT_OK;
    }
    const handler = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!handler) throw new CliError(`unknown command ${JSON.stringify(command)} (commands: preview, audit, doctor; see mesh-guard --help)`);
    return await handler(rest, io);
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`mesh-guard: ${err.message}\n`);
      return err.exitCode;
    }
    // A bug, not an input problem: still one line, the stack only on request.
    const detail = err instanceof Error ? `${err.name}: ${err.message.split('\n')[0]}` : String(err);
    io.err(`mesh-guard: internal error: ${detail}${io.env.MESH_GUARD_DEBUG ? `\n${(err as Error)?.stack ?? ''}` : ' (set MESH_GUARD_DEBUG=1 for the stack trace)'}\n`);
    return EXIT_USAGE;
  }
}

function version(): string {
  try {
    const here = path.dirname(fileURLToPath(import.meta.url));
    for (const up of ['../..', '../../..']) {
      const file = path.resolve(here, up, 'package.json');
      if (fs.existsSync(file)) return String((JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: string }).version ?? 'unknown');
    }
  } catch {
    // fall through
  }
  return 'unknown';
}

/** The real process: stdout/stderr, stdin, env, the clock. A closed stdout pipe (| head) is not an error. */
export function processIO(): CliIO {
  return {
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    readStdin: async () => {
      if (process.stdin.isTTY) throw new CliError('-f - reads stdin, but stdin is a terminal (pipe a manifest in, or use -f FILE)');
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    env: process.env,
    now: () => new Date(),
  };
}

const invokedDirectly = (() => {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  run(process.argv.slice(2), processIO()).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.exitCode = EXIT_USAGE;
    },
  );
}
