import { describe, expect, it } from 'vitest';
import { consulListenerPort, consulMetricsBool, dynatraceBool, isPlainUrlPath, isQualifiedName, istioInjectSelector, parseGoBool } from './annotations.js';

describe('parseGoBool (strconv.ParseBool)', () => {
  it.each(['1', 't', 'T', 'TRUE', 'true', 'True'])('%s is true', (v) => expect(parseGoBool(v)).toBe(true));
  it.each(['0', 'f', 'F', 'FALSE', 'false', 'False'])('%s is false', (v) => expect(parseGoBool(v)).toBe(false));
  it.each(['', 'no', 'off', 'fAlSe', '01', ' true', 'yes', undefined])('%s is an error', (v) => expect(parseGoBool(v)).toBeUndefined());
});

describe('dynatraceBool (GetFieldBool, dynatrace.md §1.3)', () => {
  it('falls back to the default for absent, empty and unparseable values', () => {
    expect(dynatraceBool(undefined, true)).toBe(true);
    expect(dynatraceBool('', true)).toBe(true);
    expect(dynatraceBool('nie', true)).toBe(true);
    expect(dynatraceBool('NEIN', true)).toBe(true);
    expect(dynatraceBool('FALSE', true)).toBe(false);
  });
});

describe('istioInjectSelector (istio.md §5)', () => {
  const m = (o: Record<string, string>) => new Map(Object.entries(o));
  const key = 'sidecar.istio.io/inject';
  it('prefers the label over the deprecated annotation', () => {
    expect(istioInjectSelector(m({ [key]: 'false' }), m({ [key]: 'true' }))).toBe(false);
    expect(istioInjectSelector(m({}), m({ [key]: 'true' }))).toBe(true);
  });
  it('accepts only "true"/"false" (1.27+)', () => {
    expect(istioInjectSelector(m({ [key]: 'yes' }), m({}))).toBeUndefined();
    expect(istioInjectSelector(m({ [key]: 'False' }), m({}))).toBeUndefined();
  });
});

describe('isQualifiedName', () => {
  it.each(['a', 'oneagent.dynatrace.com/inject', 'k8s-app', 'a_b.c', 'x/' + 'a'.repeat(63)])('%s is valid', (k) =>
    expect(isQualifiedName(k)).toBe(true));
  it.each(['', '/a', 'a/', '__proto__', 'Ünïcode', 'a b', '-a', 'A.B/c', 'x/' + 'a'.repeat(64), 'a/b/c'])('%s is invalid', (k) =>
    expect(isQualifiedName(k)).toBe(false));
});

describe('Consul metrics annotations (consul-k8s metrics_configuration.go, common.go)', () => {
  it('an empty value means the default, unlike connect-inject', () => {
    expect(consulMetricsBool('')).toEqual({ present: false });
    expect(consulMetricsBool(undefined)).toEqual({ present: false });
    expect(consulMetricsBool('T')).toEqual({ present: true, value: true });
    expect(consulMetricsBool('yes')).toEqual({ present: true, invalid: true });
  });
  it.each(['1024', '20200', '65535'])('listener port %s is accepted', (v) => expect(consulListenerPort(v)).toBe(Number(v)));
  it.each(['1023', '80', '65536', '0x4e20', '020200', 'prometheus', '20200,20300', '', ' 20200', undefined])('listener port %s is refused', (v) =>
    expect(consulListenerPort(v)).toBeUndefined(),
  );
  it.each(['/', '/metrics', '/stats/prometheus', '/a%2Fb', "/x;v=1,2:@!$&'()*+="])('%s is a plain URL path', (v) => expect(isPlainUrlPath(v)).toBe(true));
  it.each(['', 'metrics', '/m?x=1', '/m#f', '/a b', '/a"b', '/a\\b', '/%zz', '/日本', '/m\n'])('%s is not a plain URL path', (v) => expect(isPlainUrlPath(v)).toBe(false));
});
