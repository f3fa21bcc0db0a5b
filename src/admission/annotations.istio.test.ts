import { describe, expect, it } from 'vitest';
import { parseIstioScrapeConfig, parsePort, prometheusVariants, sanitizePrometheusLabelName } from './annotations.js';

describe('sanitizePrometheusLabelName (istio.md §1)', () => {
  it.each([
    ['prometheus.io/scrape', 'prometheus_io_scrape'],
    ['prometheus.io.scrape', 'prometheus_io_scrape'],
    ['prometheus-io/scrape', 'prometheus_io_scrape'],
    ['prometheus/io/scrape', 'prometheus_io_scrape'],
    ['Prometheus.io/scrape', 'Prometheus_io_scrape'],
    ['prometheus.io/scräpe', 'prometheus_io_scr_pe'],
  ])('%s → %s', (key, out) => expect(sanitizePrometheusLabelName(key)).toBe(out));
});

describe('prometheusVariants', () => {
  it('finds every key Istio reads as the same annotation, case-sensitively, in key order', () => {
    const a = new Map([
      ['prometheus.io/port', '1'],
      ['prometheus.io.port', '2'],
      ['prometheus-io/port', '3'],
      ['Prometheus.io/port', '4'],
      ['prometheus.io/path', '5'],
    ]);
    expect(prometheusVariants(a, 'prometheus.io/port')).toEqual([
      ['prometheus-io/port', '3'],
      ['prometheus.io.port', '2'],
      ['prometheus.io/port', '1'],
    ]);
  });
});

describe('parsePort', () => {
  it.each([['1', 1], ['8080', 8080], ['65535', 65535]])('%s is %d', (v, n) => expect(parsePort(v)).toBe(n));
  it.each(['0', '65536', '08080', '+80', '-1', ' 80', '80 ', '8e3', '0x50', '', 'http', undefined])('%s is not a port', (v) =>
    expect(parsePort(v)).toBeUndefined(),
  );
});

describe('parseIstioScrapeConfig (ISTIO_PROMETHEUS_ANNOTATIONS)', () => {
  it('reads the single-target and the 1.31 multi-target shapes', () => {
    expect(parseIstioScrapeConfig('{"scrape":"true","path":"/metrics","port":"8080"}')).toEqual({ scrape: 'true', path: '/metrics', port: '8080', targets: [] });
    expect(parseIstioScrapeConfig('{"scrape":"true","path":"/metrics","port":"8080","targets":[{"port":"9100","path":"/c"}]}')!.targets).toEqual([{ port: '9100', path: '/c' }]);
  });
  it('treats missing fields as Go zero values', () => {
    expect(parseIstioScrapeConfig('{}')).toEqual({ scrape: '', path: '', port: '', targets: [] });
  });
  it.each(['', 'null', '[]', '"x"', '{"port":8080}', '{"scrape":true}', '{"targets":{}}', '{"targets":[1]}', '{"targets":[{"port":1}]}', '{"scrape":"true",'])(
    'rejects %s',
    (v) => expect(parseIstioScrapeConfig(v)).toBeUndefined(),
  );
});
