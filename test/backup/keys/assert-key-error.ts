// Shared by the key provider tests: the one way they expect a KeyError.
import assert from 'node:assert/strict';
import { KeyError } from '../../../backup/contracts.ts';

/** Rejects with a KeyError whose message matches every pattern. */
export async function rejectsKeyError(p: Promise<unknown> | (() => unknown), ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(
    async () => (typeof p === 'function' ? p() : p),
    (err: unknown) => {
      assert.ok(err instanceof KeyError, `expected KeyError, got ${String(err)}`);
      for (const re of patterns) assert.match(err.message, re);
      return true;
    },
  );
}
