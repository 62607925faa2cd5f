/** Listen addresses in Postfix notation: `inet:HOST:PORT`, `inet:[v6]:PORT`, `unix:/path` (or `local:`). */
export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function parseListen(spec: string): ListenAddress {
  const m = /^(inet|inet6|tcp|unix|local):(.+)$/.exec(spec);
  if (!m) throw new Error(`expected inet:HOST:PORT or unix:/path, got ${JSON.stringify(spec)}`);
  const [, scheme, rest] = m as unknown as [string, string, string];
  if (scheme === 'unix' || scheme === 'local') {
    if (!rest.startsWith('/')) throw new Error(`unix socket path must be absolute: ${JSON.stringify(rest)}`);
    return { kind: 'unix', path: rest };
  }
  // Decide by which form matched: testing rest for '@' let 'inet:a@b:25' through with port NaN.
  const hp = /^(?:\[([^\]@]+)\]|([^:@]*)):(\d{1,5})$/.exec(rest);
  const at = hp ? null : /^(\d{1,5})@([^@]+)$/.exec(rest); // Sendmail's inet:PORT@HOST
  if (!hp && !at) throw new Error(`expected inet:HOST:PORT, got ${JSON.stringify(spec)}`);
  const host = hp ? (hp[1] ?? hp[2] ?? '') : at![2]!;
  const port = Number(hp ? hp[3] : at![1]);
  if (port > 65535) throw new Error(`port out of range in ${JSON.stringify(spec)}`);
  return { kind: 'tcp', host: host || '127.0.0.1', port };
}

export function formatListen(addr: ListenAddress): string {
  if (addr.kind === 'unix') return `unix:${addr.path}`;
  return addr.host.includes(':') ? `inet:[${addr.host}]:${addr.port}` : `inet:${addr.host}:${addr.port}`;
}
