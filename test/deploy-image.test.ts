/**
 * No Docker engine runs here, so this test checks the Dockerfile's shape and then performs its
 * steps by hand: production-only `npm ci` (the exact command of the deps stage, plus
 * --prefer-offline to use the local cache) in an empty directory, the TypeScript build of the
 * build stage (test/global-setup.ts runs it), the runtime stage's copies, and its command: `node --max-semi-space-size=8 dist/src/server/main.js`
 * with the certificate files and config file configured the way the Deployment does. It
 * passes when /readyz answers 200 over HTTPS, the process wrote nothing into the app directory
 * (the pod's root filesystem is read-only), and SIGTERM stops it cleanly. The server runs on the
 * node that runs the suite: in CI's `scripts/node24.sh npm test`, the image's Node major.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './support/process.js';

const repoRoot = path.resolve(import.meta.dirname, '..');
const dockerfile = fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');

interface Stage {
  from: string;
  name?: string;
  lines: string[];
}

function stages(text: string): Stage[] {
  const args = new Map<string, string>();
  const out: Stage[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [instr, ...rest] = line.split(/\s+/);
    const arg = rest.join(' ');
    if (instr === 'ARG' && out.length === 0) {
      const [k, v] = arg.split('=');
      if (k && v) args.set(k, v);
    } else if (instr === 'FROM') {
      const [image, as, name] = rest;
      const from = image!.replace(/\$\{(\w+)\}/g, (_m, k: string) => args.get(k) ?? '');
      out.push({ from, ...(as?.toUpperCase() === 'AS' ? { name } : {}), lines: [] });
    } else {
      out.at(-1)?.lines.push(`${instr} ${arg}`);
    }
  }
  return out;
}

const runtimeStage = () => stages(dockerfile).at(-1)!;
const stageNamed = (name: string) => stages(dockerfile).find((s) => s.name === name)!;

describe('Dockerfile', () => {
  it('is multi-stage: npm ci + tsc build, production-only deps, distroless Node runtime', () => {
    const all = stages(dockerfile);
    expect(all.length).toBeGreaterThanOrEqual(2);
    const build = stageNamed('build');
    expect(build.lines).toContain('RUN npm run build');
    expect(build.lines.some((l) => /^RUN npm ci\b/.test(l))).toBe(true);
    const deps = stageNamed('deps');
    expect(deps.lines.some((l) => /^RUN npm ci .*--omit=dev/.test(l))).toBe(true);

    const rt = runtimeStage();
    expect(rt.from).toMatch(/^gcr\.io\/distroless\/nodejs\d+-debian\d+:nonroot$/);
    // Runtime gets node_modules from the production-only stage, and only the compiled output.
    expect(rt.lines).toContain('COPY --from=deps --chown=0:0 /app/node_modules ./node_modules');
    expect(rt.lines.some((l) => /--from=build .*\/app\/dist\/src/.test(l))).toBe(true);
    expect(rt.lines.some((l) => /--from=build .*node_modules/.test(l))).toBe(false);
    expect(rt.lines.some((l) => l.startsWith('RUN '))).toBe(false); // nothing executes in the shell-less image
    const user = rt.lines.find((l) => l.startsWith('USER '))!.slice(5);
    expect(user).toMatch(/^[0-9]+(:[0-9]+)?$/);
    expect(Number(user.split(':')[0])).toBeGreaterThan(0);
    expect(rt.lines).toContain('EXPOSE 8443');
    // Exec form (no shell), running the compiled server with the image's node entrypoint and
    // the node flags of `npm start` (which the benchmark also runs with).
    const start = (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start.split(' ');
    expect(start).toEqual(['MALLOC_ARENA_MAX=2', 'node', '--max-semi-space-size=8', 'dist/src/server/main.js']);
    expect(rt.lines).toContain(`CMD [${start.slice(2).map((w) => JSON.stringify(w)).join(', ')}]`);
    expect(rt.lines).toContain(`ENV NODE_ENV=production ${start[0]}`);
  });

  it('runs one Node LTS major everywhere: runtime image, build stages, and CI (scripts/node24.sh)', () => {
    const [, runtimeMajor, debian] = /distroless\/nodejs(\d+)-debian(\d+)/.exec(runtimeStage().from)!;
    // Even majors are the LTS lines (and the only ones distroless publishes).
    expect(Number(runtimeMajor) % 2, runtimeStage().from).toBe(0);
    expect(Number(runtimeMajor)).toBeGreaterThanOrEqual(24);
    // Build stages: the same Node major, on the runtime's Debian release (13 is trixie).
    const codename: Record<string, string> = { '12': 'bookworm', '13': 'trixie' };
    for (const name of ['build', 'deps']) expect(stageNamed(name).from).toBe(`node:${runtimeMajor}-${codename[debian!]}-slim`);
    // CI runs the suite on this major too, with a pinned exact release.
    const script = fs.readFileSync(path.join(repoRoot, 'scripts/node24.sh'), 'utf8');
    expect(/^VERSION=(\d+)\.\d+\.\d+$/m.exec(script)?.[1]).toBe(runtimeMajor);
  });

  it('.dockerignore keeps local node_modules and dist out of the build context', () => {
    const ignore = fs.readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8').split('\n');
    for (const p of ['node_modules', 'dist', '.git', '.build']) expect(ignore).toContain(p);
    for (const needed of ['src', 'bench', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
      expect(ignore).not.toContain(needed);
    }
  });
});

function get(port: number, urlPath: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: urlPath, ca, servername: 'localhost', agent: false, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function listTree(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

describe('the image steps, run without Docker', () => {
  let tmp: string;
  let app: string;
  let child: ChildProcess | undefined;
  let stderr = '';

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-image-'));
    app = path.join(tmp, 'app');
    fs.mkdirSync(app);
  });
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('installs production deps, builds, starts the compiled server and answers /readyz 200', async () => {
    // deps stage: COPY package.json package-lock.json ./ ; RUN npm ci --omit=dev ...
    for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(repoRoot, f), path.join(app, f));
    const ciLine = stageNamed('deps').lines.find((l) => /^RUN npm ci /.test(l))!;
    const ciArgs = ciLine.replace(/^RUN npm /, '').split(/\s+/);
    try {
      execFileSync(npm, [...ciArgs, '--prefer-offline', '--loglevel=error'], { cwd: app, stdio: 'pipe', timeout: 300_000 });
    } catch (err) {
      // The image build runs this same command; if it fails here, `docker build` fails too.
      const out = String((err as { stderr?: unknown }).stderr ?? err);
      const lines = out.split('\n').filter((l) => /code|in sync|Missing|Invalid/.test(l)).slice(0, 6);
      throw new Error(`\`npm ${ciArgs.join(' ')}\` failed, so the Dockerfile's deps stage would fail:\n${lines.join('\n')}`);
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    for (const dep of Object.keys(pkg.dependencies)) expect(fs.existsSync(path.join(app, 'node_modules', dep)), dep).toBe(true);
    // Dev tools stay out (some dev deps, e.g. @types/node, are also transitive production deps).
    for (const dev of ['typescript', 'vitest', 'fast-check', 'supertest', 'kubernetes-models']) {
      expect(Object.keys(pkg.devDependencies)).toContain(dev);
      expect(fs.existsSync(path.join(app, 'node_modules', dev)), dev).toBe(false);
    }

    // build stage: `npm run build` (= tsc -p tsconfig.build.json) is what test/global-setup.ts
    // runs before the suite; the runtime stage copies dist/src only.
    const built = path.join(repoRoot, 'dist', 'src');
    expect(fs.existsSync(path.join(built, 'server/main.js')), 'dist/ is built by test/global-setup.ts').toBe(true);
    fs.cpSync(built, path.join(app, 'dist', 'src'), { recursive: true });
    expect(fs.existsSync(path.join(app, 'dist/src/server/main.js'))).toBe(true);

    // Certificate and config as the Deployment mounts them (outside the app directory).
    const tlsDir = path.join(tmp, 'tls');
    fs.mkdirSync(tlsDir);
    const ca = await generate([{ name: 'commonName', value: 'test ca' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [{ name: 'basicConstraints', cA: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true }],
    });
    const leaf = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      ca: { key: ca.private, cert: ca.cert },
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 2, value: 'mesh-guard.mesh-guard.svc' }] },
      ],
    });
    fs.writeFileSync(path.join(tlsDir, 'tls.crt'), leaf.cert);
    fs.writeFileSync(path.join(tlsDir, 'tls.key'), leaf.private, { mode: 0o600 });
    const configFile = path.join(tmp, 'config.yaml');
    fs.writeFileSync(configFile, 'cluster:\n  mode: "off"\nserver:\n  shutdownDelayMs: 0\n  shutdownTimeoutMs: 2000\n');

    const before = listTree(app);
    const port = await freePort();
    // runtime stage: WORKDIR /app, USER non-root, the stage's ENV, and its CMD with node as the entrypoint.
    const rt = runtimeStage();
    const cmd = JSON.parse(rt.lines.find((l) => l.startsWith('CMD '))!.slice(4)) as string[];
    const imageEnv = Object.fromEntries(
      rt.lines.filter((l) => l.startsWith('ENV ')).flatMap((l) => l.slice(4).split(/\s+/).map((kv) => kv.split('=') as [string, string])),
    );
    child = spawn(process.execPath, cmd, {
      cwd: app,
      env: {
        PATH: process.env.PATH ?? '',
        ...imageEnv,
        PORT: String(port),
        CONFIG_FILE: configFile,
        TLS_CERT_FILE: path.join(tlsDir, 'tls.crt'),
        TLS_KEY_FILE: path.join(tlsDir, 'tls.key'),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (c) => (stderr += String(c)));
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));

    let status = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && child.exitCode === null) {
      status = await get(port, '/readyz', ca.cert).catch(() => 0);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(status, `server stderr: ${stderr}`).toBe(200);
    expect(await get(port, '/healthz', ca.cert)).toBe(200);

    // Nothing written next to the app (the pod runs with readOnlyRootFilesystem).
    expect(listTree(app)).toEqual(before);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 600_000);
});
