/**
 * The key provider the config asks for (backup.keys.provider), plus the keyring's admin commands.
 * Everything external is injectable: env (VAULT_TOKEN, AWS_REGION), fetch (Vault) and the KMS client,
 * so tests point the real code at in-process protocol fakes.
 */
import type { KMSClient } from '@aws-sdk/client-kms';
import type { BackupConfig } from '../../core/config/backup.ts';
import type { KeyProvider } from '../contracts.ts';
import { createAwsKmsKeyProvider, createKmsClient } from './aws-kms.ts';
import { createLocalKeyProvider } from './local-keyring.ts';
import { createVaultKeyProvider } from './vault-transit.ts';

export { createAwsKmsKeyProvider, createKmsClient, KMS_VERSION } from './aws-kms.ts';
export { createLocalKeyProvider, initKeyring, keyringInfo, retireKeyVersion, rotateKeyring, KEYRING_FORMAT } from './local-keyring.ts';
export type { KeyringInfo, KeyringVersionInfo } from './local-keyring.ts';
export { createVaultKeyProvider } from './vault-transit.ts';

export interface KeyProviderDeps {
  /** VAULT_TOKEN, AWS_REGION / AWS_DEFAULT_REGION; process.env when absent. */
  env?: NodeJS.ProcessEnv;
  /** Vault's HTTP client; the global fetch when absent. */
  fetch?: typeof fetch;
  /** Used as is (its region, endpoint and credentials); else one is built from backup.keys.awsKms. */
  kmsClient?: KMSClient;
}

/**
 * Builds the configured provider, checking what can be checked without a network call: the keyring
 * is read and validated now, the KMS key id and region and the Vault address and token must be set.
 * Throws KeyError otherwise. Meant to be called once per command.
 */
export function createKeyProvider(config: BackupConfig['keys'], deps: KeyProviderDeps = {}): KeyProvider {
  switch (config.provider) {
    case 'local':
      return createLocalKeyProvider(config.local.keyring);
    case 'aws-kms':
      return createAwsKmsKeyProvider(config.awsKms, deps.kmsClient ?? createKmsClient(config.awsKms, deps.env));
    case 'vault':
      return createVaultKeyProvider(config.vault, { env: deps.env, fetch: deps.fetch });
  }
}
