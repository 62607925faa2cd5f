/**
 * AWS KMS as the key provider, through @aws-sdk/client-kms:
 * - generateDataKey → GenerateDataKey (KeySpec AES_256) under the configured key;
 * - unwrap → Decrypt, naming the KeyId the manifest recorded (KMS then refuses a blob made under
 *   another key with IncorrectKeyException instead of quietly using it);
 * - rewrap → ReEncrypt to the configured key. The plaintext never leaves KMS, and KMS re-encrypts
 *   under the key's newest backing material, which is what "rewrap after rotation" means here;
 * - currentVersion → the configured key id: rotation is internal to KMS, so the manifest's version is
 *   always "kms" and a change of key id is the only visible change.
 *
 * The binding to a backup is KMS's EncryptionContext {"ceerion:backup-id", "ceerion:object"}: the
 * same context must be given to Decrypt and ReEncrypt, or KMS answers InvalidCiphertextException.
 *
 * Credentials come from the SDK's default chain (env, shared config/SSO, container/instance role);
 * the config holds no AWS secret.
 */
import { DecryptCommand, GenerateDataKeyCommand, KMSClient, ReEncryptCommand } from '@aws-sdk/client-kms';
import type { BackupConfig } from '../../core/config/backup.ts';
import { KeyError, type KeyContext, type KeyProvider, type WrappedKey } from '../contracts.ts';
import { checkContext, checkProvider, decodeBase64Strict, errorMessage, keyError, kmsEncryptionContext, requireDataKey } from './common.ts';

export type AwsKmsConfig = BackupConfig['keys']['awsKms'];

/** The manifest's version for KMS-wrapped keys (see the header). */
export const KMS_VERSION = 'kms';

/**
 * A client for the configured region and endpoint. The region falls back to AWS_REGION /
 * AWS_DEFAULT_REGION from `env` so the error below can name both places to set it; credentials
 * are left to the SDK's default chain (which reads process.env itself).
 */
export function createKmsClient(config: AwsKmsConfig, env: NodeJS.ProcessEnv = process.env): KMSClient {
  const region = config.region || env.AWS_REGION || env.AWS_DEFAULT_REGION;
  if (!region) {
    throw new KeyError('AWS KMS needs a region: set backup.keys.awsKms.region or AWS_REGION');
  }
  return new KMSClient({
    region,
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    // KMS calls are small; a hung endpoint should fail the command in seconds, not minutes.
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000 },
    maxAttempts: 3,
  });
}

/** The KMS provider over an existing client (the CLI's from createKmsClient, or a test's). */
export function createAwsKmsKeyProvider(config: AwsKmsConfig, client: KMSClient): KeyProvider {
  if (!config.keyId) {
    throw new KeyError('backup.keys.awsKms.keyId is empty; set it to the KMS key ARN, id or alias/… that wraps backup keys');
  }
  return new AwsKmsKeyProvider(config.keyId, client);
}

class AwsKmsKeyProvider implements KeyProvider {
  readonly name = 'aws-kms' as const;

  constructor(
    private readonly keyId: string,
    private readonly client: KMSClient,
  ) {}

  async generateDataKey(ctx: KeyContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }> {
    checkContext(ctx);
    const res = await this.send('GenerateDataKey', this.keyId, () =>
      this.client.send(new GenerateDataKeyCommand({ KeyId: this.keyId, KeySpec: 'AES_256', EncryptionContext: kmsEncryptionContext(ctx) })),
    );
    const plaintext = requireDataKey(res.Plaintext, `AWS KMS GenerateDataKey with key ${this.keyId}`);
    return { plaintext, wrapped: this.wrappedFrom(res.CiphertextBlob, res.KeyId, 'GenerateDataKey') };
  }

  async unwrap(wrapped: WrappedKey, ctx: KeyContext): Promise<Buffer> {
    const blob = this.checkWrapped(wrapped);
    checkContext(ctx);
    const res = await this.send('Decrypt', wrapped.keyId, () =>
      this.client.send(new DecryptCommand({ CiphertextBlob: blob, KeyId: wrapped.keyId, EncryptionContext: kmsEncryptionContext(ctx) })),
    );
    return requireDataKey(res.Plaintext, `AWS KMS Decrypt with key ${wrapped.keyId}`);
  }

  async rewrap(wrapped: WrappedKey, ctx: KeyContext): Promise<WrappedKey> {
    const blob = this.checkWrapped(wrapped);
    checkContext(ctx);
    const context = kmsEncryptionContext(ctx);
    const res = await this.send('ReEncrypt', wrapped.keyId, () =>
      this.client.send(
        new ReEncryptCommand({
          CiphertextBlob: blob,
          SourceKeyId: wrapped.keyId,
          SourceEncryptionContext: context,
          DestinationKeyId: this.keyId,
          DestinationEncryptionContext: context,
        }),
      ),
    );
    return this.wrappedFrom(res.CiphertextBlob, res.KeyId, 'ReEncrypt');
  }

  async currentVersion(): Promise<string> {
    return this.keyId;
  }

  private checkWrapped(wrapped: WrappedKey): Buffer {
    checkProvider(wrapped, 'aws-kms');
    if (typeof wrapped.keyId !== 'string' || wrapped.keyId === '') throw new KeyError('KMS-wrapped data key names no key id');
    const blob = decodeBase64Strict(wrapped.wrapped, `KMS-wrapped data key (key ${wrapped.keyId})`);
    if (blob.length === 0) throw new KeyError(`KMS-wrapped data key (key ${wrapped.keyId}) is empty`);
    return blob;
  }

  /** KMS answers with the key's ARN even when asked by alias; the ARN is what Decrypt needs later. */
  private wrappedFrom(blob: Uint8Array | undefined, arn: string | undefined, op: string): WrappedKey {
    if (!blob || blob.length === 0) throw new KeyError(`AWS KMS ${op} with key ${this.keyId} returned no CiphertextBlob`);
    return { provider: 'aws-kms', keyId: arn || this.keyId, version: KMS_VERSION, wrapped: Buffer.from(blob).toString('base64') };
  }

  /** Every SDK failure becomes a KeyError naming the operation, the key and the SDK's own words. */
  private async send<T>(op: string, keyId: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      const name = err instanceof Error ? err.name : 'Error';
      const hint =
        name === 'InvalidCiphertextException'
          ? ' (the wrapped key belongs to another backup or object, or was altered)'
          : name === 'IncorrectKeyException'
            ? ' (the wrapped key was made under a different KMS key)'
            : '';
      // KMS often sends no message (InvalidCiphertextException); the SDK then says "UnknownError".
      const said = errorMessage(err);
      const text = said === '' || said === 'UnknownError' || said === name ? '' : `: ${said}`;
      throw keyError(`AWS KMS ${op} with key ${keyId} failed: ${name}${text}${hint}`, err);
    }
  }
}
