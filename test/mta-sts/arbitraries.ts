/**
 * fast-check generators for MTA-STS requests, shared by the pure fuzz (policy.test.ts) and the
 * one over HTTP (server.test.ts). Weighted so that every answer (200, 400, 404, 405) is common:
 * hosts near the configured names (any case, trailing dots, ports) next to junk of every byte.
 */
import fc from 'fast-check';
import { POLICY_PATH } from '../../mta-sts/policy.ts';

/** A name in random case: the configured ones and their near misses. */
const caseArb = (names: string[]) =>
  fc.tuple(fc.constantFrom(...names), fc.array(fc.boolean(), { minLength: 30, maxLength: 30 })).map(([n, up]) => [...n].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(''));

/** Hosts near the interesting cases (weighted so every answer is common), plus junk of every byte. */
export const hostArb = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .tuple(caseArb(['mta-sts.']), caseArb(['example.com', 'example.org', 'gone.example', 'other.example']), fc.constantFrom('', '.'), fc.constantFrom('', ':', ':443', ':65535'))
      .map((parts) => parts.join('')),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom('mta-sts.', 'MTA-STS.', 'mta-sts', 'www.', '', 'mta-sts.mta-sts.', '-', '*.'),
        fc.constantFrom('example.com', 'Example.Org', 'gone.example', 'other.example', 'example', '127.0.0.1', 'exa_mple.com', '[::1]', 'a..b'),
        fc.constantFrom('', '.', '..'),
        fc.constantFrom('', ':', ':443', ':65535', ':65536', ':x', ':80:80', '@x', '#f', '/'),
      )
      .map((parts) => parts.join('')),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 300 }) },
);

export const targetArb = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(POLICY_PATH, `${POLICY_PATH}?x=1`) },
  { weight: 2, arbitrary: fc.constantFrom(`${POLICY_PATH}#frag`, '/', '/.well-known/', '/.well-known/MTA-STS.TXT', '*', 'mta-sts.txt', `${POLICY_PATH}/`, `/${POLICY_PATH}`) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('http://', 'https://', 'HTTP://', 'ftp://'), hostArb.filter((h) => !/[\s/?]/.test(h)), fc.constantFrom('', POLICY_PATH, '/x', `?${POLICY_PATH}`))
      .map((p) => p.join('')),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map((s) => `/${s}`) },
);

export const methodArb = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('GET', 'HEAD') }, { weight: 1, arbitrary: fc.constantFrom('POST', 'PUT', 'DELETE', 'OPTIONS', 'get', 'PATCH') });

