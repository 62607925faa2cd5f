/**
 * Key rotation at the provider, for the providers where we can ask for it. The local keyring's is
 * in keys/local-keyring.ts (rotateKeyring); Vault transit rotates with one call; AWS KMS rotates
 * its own key material and needs nothing from us (see `ceerion backup rotate-key`).
 */
import type { BackupConfig } from '../core/config/backup.ts';
import { KeyError } from './contracts.ts';

/** POST /v1/{mount}/keys/{name}/rotate; resolves with the new latest version. */
export async function rotateVaultKey(cfg: BackupConfig['keys']['vault'], deps: { env?: NodeJS.ProcessEnv; fetch?: typeof fetch } = {}): Promise<number> {
  const token = cfg.token || (deps.env ?? process.env).VAULT_TOKEN || '';
  if (!cfg.address || !token) throw new KeyError('Vault rotation needs backup.keys.vault.address and VAULT_TOKEN');
  const f = deps.fetch ?? fetch;
  const base = `${cfg.address.replace(/\/+$/, '')}/v1/${cfg.mount}/keys/${encodeURIComponent(cfg.keyName)}`;
  const headers: Record<string, string> = { 'X-Vault-Token': token, ...(cfg.namespace ? { 'X-Vault-Namespace': cfg.namespace } : {}) };
  const rotated = await f(`${base}/rotate`, { method: 'POST', headers, signal: AbortSignal.timeout(10_000) });
  if (!rotated.ok) throw new KeyError(`Vault rotate ${cfg.keyName}: HTTP ${rotated.status} ${await rotated.text()}`);
  const info = await f(base, { headers, signal: AbortSignal.timeout(10_000) });
  if (!info.ok) throw new KeyError(`Vault read key ${cfg.keyName}: HTTP ${info.status}`);
  const body = (await info.json()) as { data?: { latest_version?: number } };
  const v = body.data?.latest_version;
  if (typeof v !== 'number') throw new KeyError(`Vault read key ${cfg.keyName}: no latest_version in the answer`);
  return v;
}
