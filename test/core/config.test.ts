import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, envOverrides, loadConfig, parseConfig } from '../../core/config/load.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function yamlFile(text: string): string {
  const file = path.join(dir, `config-${++files}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** loadConfig with an explicit environment, never the test process's own. */
const load = (opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {}) =>
  loadConfig({ env: {}, ...opts });

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

describe('defaults', () => {
  test('with no file, no environment and no overrides', () => {
    const c = load();
    assert.equal(c.hostname, os.hostname());
    assert.deepEqual(c.log, { level: 'info' });
    assert.deepEqual(c.metrics, { enabled: true, host: '127.0.0.1', port: 9464 });
    assert.equal(c.milter.listen, 'inet:127.0.0.1:8891');
    assert.equal(c.milter.socketMode, '0666');
    assert.equal(c.milter.maxFrameBytes, 1024 * 1024);
    assert.equal(c.milter.idleTimeoutMs, 600_000);
    assert.equal(c.milter.progressIntervalMs, 10_000);
    assert.equal(c.milter.shutdownGraceMs, 15_000);
    assert.equal(c.milter.checks.defaultTimeoutMs, 20_000);
    assert.equal(c.milter.checks.defaultOnError, 'tempfail');
    assert.equal(c.milter.checks.trace.enabled, true);
    assert.equal(c.milter.checks.trace.onError, 'accept');
    assert.equal(c.milter.checks.trace.header, 'X-Ceerion-Milter');
  });

  test('an empty file and a file holding only a comment give the defaults', () => {
    assert.deepEqual(load({ file: yamlFile('') }), load());
    assert.deepEqual(load({ file: yamlFile('# nothing here\n') }), load());
  });

  test('parseConfig({}) equals loadConfig with nothing', () => {
    assert.deepEqual(parseConfig({}), load());
  });
});

describe('precedence: defaults < file < environment < overrides', () => {
  const file = () =>
    yamlFile(
      [
        'hostname: mx.file.example',
        'log:',
        '  level: warn',
        'milter:',
        '  listen: inet:127.0.0.1:10001',
        '  idleTimeoutMs: 1000',
        '  shutdownGraceMs: 2000',
        '  checks:',
        '    trace:',
        '      header: X-File-Trace',
      ].join('\n'),
    );

  test('the file overrides defaults and leaves the rest alone', () => {
    const c = load({ file: file() });
    assert.equal(c.hostname, 'mx.file.example');
    assert.equal(c.log.level, 'warn');
    assert.equal(c.milter.listen, 'inet:127.0.0.1:10001');
    assert.equal(c.milter.idleTimeoutMs, 1000);
    assert.equal(c.milter.checks.trace.header, 'X-File-Trace');
    // Siblings in the same mappings keep their defaults (deep merge).
    assert.equal(c.milter.progressIntervalMs, 10_000);
    assert.equal(c.milter.checks.trace.onError, 'accept');
    assert.equal(c.metrics.port, 9464);
  });

  test('CEERION_* variables override the file, coerced to the default value type', () => {
    const c = load({
      file: file(),
      env: {
        CEERION_MILTER_IDLE_TIMEOUT_MS: '2500',
        CEERION_MILTER_LISTEN: 'unix:/run/ceerion/milter.sock',
        CEERION_LOG_LEVEL: 'debug',
        CEERION_METRICS_ENABLED: 'false',
        CEERION_METRICS_PORT: '9999',
        CEERION_MILTER_CHECKS_DEFAULT_ON_ERROR: 'reject',
        CEERION_MILTER_CHECKS_TRACE_ENABLED: 'no',
        CEERION_HOSTNAME: 'mx.env.example',
        UNRELATED: 'ignored',
      },
    });
    assert.equal(c.milter.idleTimeoutMs, 2500);
    assert.equal(c.milter.listen, 'unix:/run/ceerion/milter.sock');
    assert.equal(c.log.level, 'debug');
    assert.equal(c.metrics.enabled, false);
    assert.equal(c.metrics.port, 9999);
    assert.equal(c.milter.checks.defaultOnError, 'reject');
    assert.equal(c.milter.checks.trace.enabled, false);
    assert.equal(c.hostname, 'mx.env.example');
    // Not in the environment: still from the file.
    assert.equal(c.milter.shutdownGraceMs, 2000);
    assert.equal(c.milter.checks.trace.header, 'X-File-Trace');
  });

  test('overrides (command-line flags) win over the environment and the file', () => {
    const c = load({
      file: file(),
      env: { CEERION_MILTER_LISTEN: 'inet:127.0.0.1:10002', CEERION_LOG_LEVEL: 'debug' },
      overrides: { milter: { listen: 'inet:127.0.0.1:10003' } },
    });
    assert.equal(c.milter.listen, 'inet:127.0.0.1:10003');
    assert.equal(c.log.level, 'debug');
    assert.equal(c.milter.idleTimeoutMs, 1000);
  });

  test('envOverrides maps camelCase keys to upper snake case and ignores unknown variables', () => {
    assert.deepEqual(envOverrides({ CEERION_MILTER_MAX_FRAME_BYTES: '70000', CEERION_NOT_A_KEY: 'x' }), {
      milter: { maxFrameBytes: 70000 },
    });
    assert.deepEqual(envOverrides({}), {});
  });

  test('booleans accept 1/0, true/false, yes/no, on/off in any case', () => {
    for (const [raw, want] of [
      ['1', true],
      ['TRUE', true],
      ['Yes', true],
      ['on', true],
      ['0', false],
      ['False', false],
      ['NO', false],
      ['off', false],
    ] as const) {
      assert.equal(load({ env: { CEERION_METRICS_ENABLED: raw } }).metrics.enabled, want, raw);
    }
  });
});

describe('errors name the key and the value', () => {
  test('a bad listen address in the file', () => {
    const msg = configError(() => load({ file: yamlFile('milter:\n  listen: tcp:1\n') }));
    assert.match(msg, /milter\.listen = "tcp:1": expected inet:HOST:PORT/);
  });

  test('a bad listen address in the environment', () => {
    const msg = configError(() => load({ env: { CEERION_MILTER_LISTEN: 'inet:localhost' } }));
    assert.match(msg, /milter\.listen = "inet:localhost"/);
  });

  test('an unknown key, nested and at the top level', () => {
    const nested = configError(() => load({ file: yamlFile('hostname: mx\nmilter:\n  idleTimeout: 5\n') }));
    assert.equal(nested, 'invalid configuration:\nmilter.idleTimeout = 5: unknown key');
    // The whole configuration is not dumped into the message, only the unknown key's value.
    const top = configError(() => load({ file: yamlFile('hostname: mx\nmilterr:\n  listen: inet:127.0.0.1:1\n') }));
    assert.equal(top, 'invalid configuration:\nmilterr = {"listen":"inet:127.0.0.1:1"}: unknown key');
    const two = configError(() => load({ overrides: { log: { level: 'info', lvl: 'x', colour: true } } }));
    assert.match(two, /^log\.lvl = "x": unknown key$/m);
    assert.match(two, /^log\.colour = true: unknown key$/m);
  });

  test('the wrong type in the environment names the variable and its value', () => {
    const msg = configError(() => load({ env: { CEERION_MILTER_IDLE_TIMEOUT_MS: 'soon' } }));
    assert.equal(msg, 'CEERION_MILTER_IDLE_TIMEOUT_MS = "soon": expected a number');
    assert.match(configError(() => load({ env: { CEERION_MILTER_IDLE_TIMEOUT_MS: '' } })), /expected a number/);
    assert.match(
      configError(() => load({ env: { CEERION_METRICS_ENABLED: 'maybe' } })),
      /CEERION_METRICS_ENABLED = "maybe": expected true or false/,
    );
  });

  test('a well-typed but invalid value from the environment names the config key', () => {
    const msg = configError(() => load({ env: { CEERION_MILTER_IDLE_TIMEOUT_MS: '-5' } }));
    assert.match(msg, /milter\.idleTimeoutMs = -5/);
    assert.match(configError(() => load({ env: { CEERION_LOG_LEVEL: 'loud' } })), /log\.level = "loud"/);
  });

  test('the wrong type in the file', () => {
    const msg = configError(() => load({ file: yamlFile('milter:\n  idleTimeoutMs: fast\n') }));
    assert.match(msg, /milter\.idleTimeoutMs = "fast": Expected number, received string/);
    const range = configError(() => load({ file: yamlFile('metrics:\n  port: 70000\n') }));
    assert.match(range, /metrics\.port = 70000/);
    const mode = configError(() => load({ file: yamlFile('milter:\n  socketMode: "777x"\n') }));
    assert.match(mode, /milter\.socketMode = "777x": an octal mode/);
  });

  test('several problems are all reported', () => {
    const msg = configError(() => load({ file: yamlFile('milter:\n  listen: nope\n  maxFrameBytes: 10\n') }));
    assert.match(msg, /milter\.listen = "nope"/);
    assert.match(msg, /milter\.maxFrameBytes = 10/);
  });

  test('a file that is not a mapping', () => {
    for (const text of ['- a\n- b\n', 'just a string\n', '42\n']) {
      const file = yamlFile(text);
      const msg = configError(() => load({ file }));
      assert.equal(msg, `config file ${file} must hold a mapping at the top level`);
    }
  });

  test('a file that is not valid YAML, and a file that does not exist', () => {
    const bad = yamlFile('milter: [unclosed\n');
    assert.match(configError(() => load({ file: bad })), new RegExp(`config file ${bad} is not valid YAML`));
    const missing = path.join(dir, 'missing.yaml');
    assert.match(configError(() => load({ file: missing })), new RegExp(`cannot read config file ${missing}`));
  });
});
