/**
 * mailauth parses a DKIM/ARC public key from its TXT record for every message it verifies
 * (createPublicKey: ~0.1 ms, and ~20% of the milter's CPU under load, bench/README.md). This
 * memoizes the parsed key per TXT record: the record's text is part of the cache key, so a key
 * that changes in DNS (served through our TTL-aware cache) is parsed again, and a failed lookup
 * or a bad key is never cached.
 *
 * mailauth's verifier takes `getPublicKey` from its tools module by destructuring when it loads,
 * so this must run before `mailauth` is first imported: authentication.ts imports it first.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';

type Resolver = (name: string, rrtype: string) => Promise<unknown>;
type GetPublicKey = (type: string, name: string, minBitLength: number, resolver: Resolver) => Promise<{ publicKey: unknown }>;

const MAX_KEYS = 2_000;
const require = createRequire(import.meta.url);
const verifierLoaded = () => require.cache[require.resolve('mailauth/lib/dkim/dkim-verifier.js')] !== undefined;

/**
 * False if mailauth's verifier was loaded before this module, holding the unmemoized function:
 * a test asserts it is true in the service's module graph.
 */
export const keyCacheActive = !verifierLoaded();

const tools = require('mailauth/lib/tools.js') as { getPublicKey: GetPublicKey & { memoized?: boolean } };

if (!tools.getPublicKey.memoized) {
  const original = tools.getPublicKey;
  const cache = new Map<string, { publicKey: KeyObject }>();
  const memoized = (async (type, name, minBitLength, resolver) => {
    const answer = await resolver(name, 'TXT');
    const record = Array.isArray(answer) ? answer.map((r) => (Array.isArray(r) ? r.join('') : String(r))).join('\n') : '';
    const key = `${type}\n${minBitLength}\n${name.toLowerCase()}\n${record}`;
    const hit = cache.get(key);
    if (hit) {
      cache.delete(key); // keep recently used keys at the end (LRU)
      cache.set(key, hit);
      return hit;
    }
    // Hand the answer we already have to mailauth, so it does not look it up again.
    const res = await original(type, name, minBitLength, async () => answer);
    const entry = { ...res, publicKey: createPublicKey(res.publicKey as Parameters<typeof createPublicKey>[0]) };
    cache.set(key, entry);
    if (cache.size > MAX_KEYS) cache.delete(cache.keys().next().value!);
    return entry;
  }) as GetPublicKey & { memoized?: boolean };
  memoized.memoized = true;
  tools.getPublicKey = memoized;
}
