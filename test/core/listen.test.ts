import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatListen, parseListen, type ListenAddress } from '../../core/listen.ts';

describe('parseListen', () => {
  const good: Array<[string, ListenAddress]> = [
    ['inet:127.0.0.1:8891', { kind: 'tcp', host: '127.0.0.1', port: 8891 }],
    ['inet:localhost:0', { kind: 'tcp', host: 'localhost', port: 0 }],
    ['inet:0.0.0.0:65535', { kind: 'tcp', host: '0.0.0.0', port: 65535 }],
    ['inet:[::1]:8891', { kind: 'tcp', host: '::1', port: 8891 }],
    ['inet:[2001:db8::25]:25', { kind: 'tcp', host: '2001:db8::25', port: 25 }],
    ['inet6:[::]:8891', { kind: 'tcp', host: '::', port: 8891 }],
    ['tcp:mx.example:10025', { kind: 'tcp', host: 'mx.example', port: 10025 }],
    // An empty host means loopback, never all interfaces.
    ['inet::8891', { kind: 'tcp', host: '127.0.0.1', port: 8891 }],
    // Sendmail's inet:PORT@HOST.
    ['inet:8891@localhost', { kind: 'tcp', host: 'localhost', port: 8891 }],
    ['inet:8891@::1', { kind: 'tcp', host: '::1', port: 8891 }],
    ['unix:/var/spool/postfix/ceerion/milter.sock', { kind: 'unix', path: '/var/spool/postfix/ceerion/milter.sock' }],
    ['local:/run/ceerion/milter.sock', { kind: 'unix', path: '/run/ceerion/milter.sock' }],
  ];
  for (const [spec, want] of good) {
    test(`parses ${spec}`, () => assert.deepEqual(parseListen(spec), want));
  }

  const bad: Array<[string, RegExp]> = [
    ['', /expected inet:HOST:PORT or unix:\/path, got ""/],
    ['127.0.0.1:8891', /expected inet:HOST:PORT or unix:\/path/],
    ['tcp', /expected inet:HOST:PORT or unix:\/path/],
    ['http://127.0.0.1:8891', /expected inet:HOST:PORT or unix:\/path/],
    ['inet:localhost', /expected inet:HOST:PORT, got "inet:localhost"/],
    ['inet:localhost:', /expected inet:HOST:PORT/],
    ['inet:localhost:port', /expected inet:HOST:PORT/],
    ['inet:::1:8891', /expected inet:HOST:PORT/],
    ['inet:[::1]', /expected inet:HOST:PORT/],
    ['inet:127.0.0.1:123456', /expected inet:HOST:PORT/],
    ['inet:127.0.0.1:65536', /port out of range in "inet:127.0.0.1:65536"/],
    ['inet:99999@localhost', /port out of range/],
    ['inet:8891@', /expected inet:HOST:PORT/],
    // A host cannot hold '@'; this used to parse as port NaN.
    ['inet:user@host:25', /expected inet:HOST:PORT/],
    ['inet:[a@b]:25', /expected inet:HOST:PORT/],
    ['unix:milter.sock', /unix socket path must be absolute: "milter.sock"/],
    ['local:./milter.sock', /must be absolute/],
  ];
  for (const [spec, message] of bad) {
    test(`refuses ${JSON.stringify(spec)}`, () => assert.throws(() => parseListen(spec), message));
  }

  test('every TCP result has an integer port in range', () => {
    for (const [spec] of good) {
      const a = parseListen(spec);
      if (a.kind === 'tcp') assert.ok(Number.isInteger(a.port) && a.port >= 0 && a.port <= 65535, spec);
    }
  });
});

describe('formatListen', () => {
  test('round-trips Postfix notation, bracketing IPv6 hosts', () => {
    for (const spec of ['inet:127.0.0.1:8891', 'inet:[::1]:8891', 'inet:[2001:db8::25]:0', 'unix:/run/x.sock']) {
      assert.equal(formatListen(parseListen(spec)), spec);
    }
  });

  test('normalises the other spellings', () => {
    assert.equal(formatListen(parseListen('local:/run/x.sock')), 'unix:/run/x.sock');
    assert.equal(formatListen(parseListen('inet:8891@localhost')), 'inet:localhost:8891');
    assert.equal(formatListen(parseListen('inet6:[::]:25')), 'inet:[::]:25');
    assert.equal(formatListen(parseListen('inet::25')), 'inet:127.0.0.1:25');
  });
});
