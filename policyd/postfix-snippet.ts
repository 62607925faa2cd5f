/**
 * The main.cf lines for the policy service. The single source is docker/postfix/policy.cf, which
 * the Docker image and the test harness's private Postfix use too; here we only substitute the
 * address the service really listens on.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { postfixMilterAddress } from '../milter/postfix-snippet.ts';

export const POLICY_SNIPPET_FILE = fileURLToPath(new URL('../docker/postfix/policy.cf', import.meta.url));
const SHIPPED_ADDRESS = 'inet:127.0.0.1:10040';

/** The snippet with `listen` (Postfix notation; same chroot rules as the milter) in place of the default. */
export function policySnippet(listen: string): string {
  return readFileSync(POLICY_SNIPPET_FILE, 'utf8').replaceAll(SHIPPED_ADDRESS, postfixMilterAddress(listen));
}
