/**
 * What to answer one HTTP request, as a pure function of its method, request target and Host
 * header(s): the server (server.ts) owns the socket, the body cap and the timers, and only writes
 * what this decides. Kept pure so every odd Host and path can be fuzzed without a socket.
 *
 * - The host comes from the request target when it is in absolute form (`GET http://h/p`), as
 *   RFC 9112 §3.2.2 requires, else from the one Host header.
 * - 400 (with a reason for the log): no host, several Host headers, a host that is not a DNS name
 *   (or an IP literal) with an optional port, a request target in no known form.
 * - 405 for methods other than GET and HEAD; 404 for any host but `mta-sts.` + a configured
 *   domain, and any path but /.well-known/mta-sts.txt (a query string is ignored).
 */
import { POLICY_PATH, type CompiledPolicy } from './policy.ts';

export interface RequestFacts {
  method: string;
  /** The request target exactly as sent (`/path?query` or `http://host/path`). */
  target: string;
  /** Every Host header value (Node's req.headersDistinct.host); empty when none was sent. */
  hosts: readonly string[];
}

export type Decision =
  | { status: 200; domain: string; policy: CompiledPolicy }
  | { status: 400 | 404 | 405; reason: string; domain?: string };

/** A DNS name of 1–63 character labels of letters, digits and inner hyphens; 253 characters at most. */
const HOST_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV6_LITERAL = /^\[[0-9a-f:.]{2,45}\]$/;

export type HostResult = { ok: true; name: string; ip: boolean } | { ok: false; reason: string };

/** `name[:port]` → the lower-case name without a trailing dot, or why it is not a host. */
export function parseHost(value: string): HostResult {
  if (value === '') return { ok: false, reason: 'empty Host' };
  if (value.length > 260) return { ok: false, reason: 'Host longer than 260 characters' };
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{0,5}))?$/.exec(value);
  if (!m) return { ok: false, reason: 'Host is not name[:port]' };
  const port = m[2];
  if (port !== undefined && port !== '' && Number(port) > 65535) return { ok: false, reason: 'port out of range in Host' };
  let name = m[1]!.toLowerCase();
  if (name.startsWith('[')) return IPV6_LITERAL.test(name) ? { ok: true, name, ip: true } : { ok: false, reason: 'malformed IPv6 literal in Host' };
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (!HOST_NAME.test(name)) return { ok: false, reason: 'Host is not a DNS name' };
  return { ok: true, name, ip: /^[0-9.]+$/.test(name) };
}

type Target = { ok: true; path: string; authority?: string } | { ok: false; reason: string };

/** origin-form (`/path?query`) or absolute-form (`http://authority/path`); the path without its query. */
export function parseTarget(target: string): Target {
  if (target.startsWith('/')) return { ok: true, path: stripQuery(target) };
  const abs = /^https?:\/\/([^/?#]*)([/?][^#]*)?$/i.exec(target);
  if (!abs) return { ok: false, reason: 'request target is neither /path nor http://host/path' };
  const authority = abs[1]!;
  if (authority.includes('@')) return { ok: false, reason: 'user info in the request target' };
  const rest = abs[2] ?? '/';
  return { ok: true, authority, path: rest.startsWith('?') ? '/' : stripQuery(rest) };
}

function stripQuery(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

export function decide(req: RequestFacts, policies: ReadonlyMap<string, CompiledPolicy>): Decision {
  const target = parseTarget(req.target);
  if (!target.ok) return { status: 400, reason: target.reason };
  let hostValue: string;
  if (target.authority !== undefined) {
    hostValue = target.authority;
  } else {
    if (req.hosts.length === 0) return { status: 400, reason: 'no Host header' };
    if (req.hosts.length > 1) return { status: 400, reason: `${req.hosts.length} Host headers` };
    hostValue = req.hosts[0]!;
  }
  const host = parseHost(hostValue);
  if (!host.ok) return { status: 400, reason: host.reason };
  if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, reason: `method ${req.method.slice(0, 20)}` };
  const domain = !host.ip && host.name.startsWith('mta-sts.') ? host.name.slice('mta-sts.'.length) : undefined;
  const policy = domain === undefined ? undefined : policies.get(domain);
  if (!policy) return { status: 404, reason: `no policy for host ${host.name}`, ...(domain ? { domain } : {}) };
  if (target.path !== POLICY_PATH) return { status: 404, reason: 'not the policy path', domain: policy.domain };
  return { status: 200, domain: policy.domain, policy };
}
