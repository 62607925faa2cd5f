/** The parsed-DKIM-key cache is in effect in the service's module graph, and is keyed by the record. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMilterServer } from '../../../milter/service.ts';
import { keyCacheActive } from '../../../milter/checks/auth/key-cache.ts';
import { zoneResolver } from '../../../core/dns/zone-resolver.ts';
import { rsaKey } from '../../helpers/signed-mail.ts';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

test('the key cache was installed before mailauth loaded its verifier', () => {
  assert.equal(typeof createMilterServer, 'function');
  assert.equal(keyCacheActive, true, 'mailauth/lib/dkim/dkim-verifier.js was loaded before key-cache.ts');
});

test('the same TXT record gives the same parsed key; a changed record is parsed again; bad keys are not cached', async () => {
  const tools = require('mailauth/lib/tools.js') as { getPublicKey: (t: string, n: string, b: number, r: unknown) => Promise<{ publicKey: unknown }> };
  const a = rsaKey();
  const b = rsaKey();
  let current = a;
  const resolver = async (name: string, type: string) => zoneResolver({ [name]: { TXT: [current.txt] } })(name, type);
  const first = await tools.getPublicKey('DKIM', 's._domainkey.example.com', 1024, resolver);
  const again = await tools.getPublicKey('DKIM', 's._domainkey.example.com', 1024, resolver);
  assert.equal(first.publicKey, again.publicKey, 'cached KeyObject reused');
  current = b;
  const rotated = await tools.getPublicKey('DKIM', 's._domainkey.example.com', 1024, resolver);
  assert.notEqual(rotated.publicKey, first.publicKey, 'a rotated key in DNS is parsed anew');
  const broken = zoneResolver({ 'x._domainkey.example.com': { TXT: [['v=DKIM1; k=rsa; p=!!!']] } });
  await assert.rejects(tools.getPublicKey('DKIM', 'x._domainkey.example.com', 1024, broken));
  await assert.rejects(tools.getPublicKey('DKIM', 'x._domainkey.example.com', 1024, broken), 'not cached: fails again');
});
