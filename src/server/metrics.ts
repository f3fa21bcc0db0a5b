import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics on a registry of our own (not the global one), so several servers
 * can live in one test process. Latency buckets include the API server's own admission
 * buckets (0.005 … 25 s), so both sides compare; finer ones below show the real spread.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly admissions = new Counter({
    name: 'mesh_guard_admissions_total',
    help: 'Admission reviews answered, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'mesh_guard_admission_duration_seconds',
    help: 'Time from request received to response sent for /mutate.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 2.5, 10, 25],
    registers: [this.registry],
  });
  readonly ruleChanges = new Counter({
    name: 'mesh_guard_rule_changes_total',
    help: 'Changes made (enforce) or reported (dry-run), by rule and mode.',
    labelNames: ['rule', 'mode'] as const,
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'mesh_guard_config_reloads_total',
    help: 'Config file reloads, by result.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly certificateExpiry = new Gauge({
    name: 'mesh_guard_certificate_expiry_timestamp_seconds',
    help: 'notAfter of the serving certificate, as a Unix timestamp.',
    registers: [this.registry],
  });

  constructor(defaultMetrics = true) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'mesh_guard_' });
  }
}
