// The attribute list and its typed readers: missing, empty, `0` and junk values are all tolerated.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ATTRIBUTE_NAMES,
  clientPort,
  encryptionKeysize,
  isAccessPolicyRequest,
  isKnownAttribute,
  messageSize,
  POSTFIX_ATTRIBUTES,
  protocolState,
  recipientCount,
  saslUsername,
  serverPort,
  text,
  underStress,
} from '../../../policyd/protocol/attributes.ts';
import { PolicyDecoder } from '../../../policyd/protocol/codec.ts';
import type { PolicyAttributes } from '../../../policyd/types.ts';

/** Attributes as the decoder makes them: a null-prototype object. */
const attrs = (o: Record<string, string>): PolicyAttributes => Object.assign(Object.create(null) as Record<string, string>, o);

describe('the attribute list', () => {
  test('is SMTPD_POLICY_README up to Postfix 3.8, in its order, with the version of each', () => {
    // Written out from the README, version by version.
    const byVersion: Record<string, string[]> = {
      '2.1': ['request', 'protocol_state', 'protocol_name', 'helo_name', 'queue_id', 'sender', 'recipient', 'recipient_count', 'client_address', 'client_name', 'reverse_client_name', 'instance'],
      '2.2': ['sasl_method', 'sasl_username', 'sasl_sender', 'size', 'ccert_subject', 'ccert_issuer', 'ccert_fingerprint'],
      '2.3': ['encryption_protocol', 'encryption_cipher', 'encryption_keysize', 'etrn_domain'],
      '2.5': ['stress'],
      '2.9': ['ccert_pubkey_fingerprint'],
      '3.0': ['client_port'],
      '3.1': ['policy_context'],
      '3.2': ['server_address', 'server_port'],
      '3.8': ['compatibility_level', 'mail_version'],
    };
    assert.deepEqual(ATTRIBUTE_NAMES, Object.values(byVersion).flat());
    for (const [version, names] of Object.entries(byVersion)) {
      for (const n of names) assert.equal(POSTFIX_ATTRIBUTES[n as keyof typeof POSTFIX_ATTRIBUTES], version, n);
    }
  });

  test('isKnownAttribute knows exactly those, and not Object.prototype members', () => {
    assert.ok(isKnownAttribute('mail_version'));
    assert.ok(isKnownAttribute('request'));
    for (const n of ['x_future', 'Request', 'toString', '__proto__', 'constructor', '']) assert.equal(isKnownAttribute(n), false, n);
  });
});

describe('readers', () => {
  test('protocolState: the documented states, case-insensitive, else undefined', () => {
    assert.equal(protocolState(attrs({ protocol_state: 'RCPT' })), 'RCPT');
    assert.equal(protocolState(attrs({ protocol_state: 'end-of-message' })), 'END-OF-MESSAGE');
    assert.equal(protocolState(attrs({ protocol_state: ' DATA ' })), 'DATA');
    for (const v of ['', 'BDAT', 'QUIT', 'RCPT TO']) assert.equal(protocolState(attrs({ protocol_state: v })), undefined, v);
    assert.equal(protocolState(attrs({})), undefined);
  });

  test('recipientCount, messageSize and encryptionKeysize: 0 when missing, empty or invalid', () => {
    const cases: Array<[string | undefined, number]> = [
      ['3', 3],
      ['0', 0],
      [' 12 ', 12],
      ['', 0],
      [undefined, 0],
      ['-1', 0],
      ['1e3', 0],
      ['0x10', 0],
      ['12abc', 0],
      ['１２', 0], // full-width digits
      ['999999999999999', 999_999_999_999_999],
      ['9999999999999999', 0], // 16 digits: past the exact range we accept
    ];
    for (const [v, want] of cases) {
      const a = attrs(v === undefined ? {} : { recipient_count: v, size: v, encryption_keysize: v });
      assert.equal(recipientCount(a), want, `recipient_count=${v}`);
      assert.equal(messageSize(a), want, `size=${v}`);
      assert.equal(encryptionKeysize(a), want, `encryption_keysize=${v}`);
    }
  });

  test('clientPort and serverPort: 0–65535, else undefined (a missing port is not port 0)', () => {
    const cases: Array<[string | undefined, number | undefined]> = [
      ['25', 25],
      ['0', 0],
      ['65535', 65535],
      ['65536', undefined],
      ['', undefined],
      [undefined, undefined],
      ['-1', undefined],
      ['25a', undefined],
      ['123456', undefined],
    ];
    for (const [v, want] of cases) {
      const a = attrs(v === undefined ? {} : { client_port: v, server_port: v });
      assert.equal(clientPort(a), want, `client_port=${v}`);
      assert.equal(serverPort(a), want, `server_port=${v}`);
    }
  });

  test('text and saslUsername: empty means unavailable', () => {
    assert.equal(saslUsername(attrs({ sasl_username: 'alice' })), 'alice');
    assert.equal(saslUsername(attrs({ sasl_username: '' })), undefined);
    assert.equal(saslUsername(attrs({})), undefined);
    assert.equal(text(attrs({ sender: '' }), 'sender'), undefined);
    assert.equal(text(attrs({ sender: 'a@b' }), 'sender'), 'a@b');
  });

  test('underStress: only "yes"', () => {
    assert.equal(underStress(attrs({ stress: 'yes' })), true);
    assert.equal(underStress(attrs({ stress: 'YES' })), true);
    for (const v of ['', 'no', 'y', '1']) assert.equal(underStress(attrs({ stress: v })), false, v);
    assert.equal(underStress(attrs({})), false);
  });

  test('isAccessPolicyRequest', () => {
    assert.equal(isAccessPolicyRequest(attrs({ request: 'smtpd_access_policy' })), true);
    assert.equal(isAccessPolicyRequest(attrs({ request: 'junk' })), false);
    assert.equal(isAccessPolicyRequest(attrs({})), false);
  });

  test('readers on a decoded request whose names collide with Object.prototype', () => {
    const [req] = new PolicyDecoder().push(Buffer.from('request=smtpd_access_policy\nconstructor=x\nsize=10\n\n'));
    assert.equal(isAccessPolicyRequest(req!), true);
    assert.equal(messageSize(req!), 10);
    assert.equal(recipientCount(req!), 0);
    assert.equal(protocolState(req!), undefined);
  });
});
