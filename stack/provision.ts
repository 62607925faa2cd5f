/**
 * One-time (idempotent) setup before the services start: migrations, the test account with its
 * password and API token, and the DKIM keys of the stack's domain. Credentials are kept in
 * VAR/run/credentials.json (0600) and reused on the next start, so the account stays usable.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createAccount, getAccount, setPassword } from '../accounts/repository.ts';
import { generatePassword, hashPassword } from '../accounts/password.ts';
import { createPool } from '../core/db/pool.ts';
import type { Logger } from '../core/log.ts';
import { migrateIndex } from '../lmtp-indexer/index/schema.ts';
import { createToken, verifyToken } from '../lmtp-indexer/auth/tokens.ts';
import { keyPath, writeNewKey, type DkimAlgorithm } from '../milter/dkim/keys.ts';
import { CREDENTIALS_FILE, type StackCredentials } from './contracts.ts';

export interface ProvisionInput {
  varDir: string;
  database: { url: string; schema: string };
  domain: string;
  keysDir: string;
  selector: string;
  algorithms: DkimAlgorithm[];
  log: Logger;
}

async function readCredentials(file: string): Promise<Partial<StackCredentials>> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Partial<StackCredentials>;
  } catch {
    return {};
  }
}

export async function provision(input: ProvisionInput): Promise<StackCredentials> {
  const pool = createPool(input.database, { max: 2 });
  try {
    // The indexer's migrations include the accounts table the private Dovecot and Postfix read.
    const applied = await migrateIndex(pool);
    if (applied.length > 0) input.log.info({ migrations: applied.map((m) => `${m.module}/${m.version}`) }, 'migrations applied');
    const file = CREDENTIALS_FILE(input.varDir);
    const saved = await readCredentials(file);
    const user = `test@${input.domain}`;
    let password = saved.user === user ? saved.password : undefined;
    const account = await getAccount(pool, user);
    if (!account || !password) {
      password = generatePassword();
      const hash = await hashPassword(password);
      if (account) await setPassword(pool, user, hash);
      else await createAccount(pool, { address: user, passwordHash: hash });
      input.log.info({ user }, 'test account ready');
    }
    let apiToken = saved.user === user ? saved.apiToken : undefined;
    if (!apiToken || (await verifyToken(pool, apiToken)) !== user) apiToken = await createToken(pool, user, 'ceerion start test account');
    for (const algorithm of input.algorithms) {
      if (!existsSync(keyPath(input.keysDir, input.domain, input.selector, algorithm))) writeNewKey(input.keysDir, input.domain, input.selector, algorithm);
    }
    const credentials: StackCredentials = { user, password, apiToken, dkimSelector: input.selector };
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
    await chmod(file, 0o600);
    return credentials;
  } finally {
    await pool.end();
  }
}
