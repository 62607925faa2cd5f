// The ObjectStore contract, run against S3Store on s3rver and against MemoryStore, so that the
// fake the runner's unit tests use cannot drift from the real store. Both list in pages of 5 keys
// and upload in 5 MiB parts, so that page and part boundaries are crossed. Every case works under
// its own prefix in one shared bucket.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../../../backup/contracts.ts';
import { MemoryStore } from '../../../backup/storage/memory-store.ts';
import { S3Store } from '../../../backup/storage/s3-store.ts';
import { startS3rver } from '../../harness/s3rver.ts';
import { MiB, randomData, readAll, recordCommands, recordingLog, sha256, stalledStream, streamOf } from './helpers.ts';

const PAGE = 5;

interface Backend {
  store: ObjectStore;
  /** List requests sent so far (ListObjects pages). */
  listRequests(): number;
  close(): Promise<void>;
}

const backends: { name: string; start(): Promise<Backend> }[] = [
  {
    name: 'S3Store on s3rver',
    async start() {
      const s3 = await startS3rver();
      const { log } = recordingLog();
      const store = new S3Store({ ...s3.config, partBytes: 5 * MiB, queueSize: 2 }, { pageSize: PAGE, log });
      const rec = recordCommands(store.client);
      return {
        store,
        listRequests: () => rec.count('ListObjectsCommand'),
        async close() {
          store.close();
          await s3.close();
        },
      };
    },
  },
  {
    name: 'MemoryStore',
    async start() {
      const store = new MemoryStore({ name: 'contract', pageSize: PAGE });
      return { store, listRequests: () => store.calls.filter((c) => c.op === 'list-page').length, close: async () => {} };
    },
  },
];

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of it) out.push(o);
  return out;
}

for (const backend of backends) {
  describe(`ObjectStore contract: ${backend.name}`, () => {
    let b: Backend;
    let store: ObjectStore;
    const fresh = () => `t-${randomBytes(4).toString('hex')}/`;
    before(async () => {
      b = await backend.start();
      store = b.store;
    });
    after(() => b.close());

    it('stores a Buffer and gives it back', async () => {
      const key = `${fresh()}db.dump`;
      const data = randomData(100_000);
      assert.deepEqual(await store.put(key, data), { size: data.length });
      assert.equal(sha256(await readAll(await store.get(key))), sha256(data));
      const info = await store.head(key);
      assert.equal(info?.key, key);
      assert.equal(info?.size, data.length);
      assert.ok(info.lastModified instanceof Date && Math.abs(info.lastModified.getTime() - Date.now()) < 60_000);
    });

    it('stores a stream of small chunks', async () => {
      const key = `${fresh()}maildir.tar`;
      const data = randomData(300_001);
      assert.deepEqual(await store.put(key, streamOf(data, 4096)), { size: data.length });
      assert.ok((await readAll(await store.get(key))).equals(data));
    });

    it('stores empty objects, from a Buffer and from a stream', async () => {
      const p = fresh();
      assert.deepEqual(await store.put(`${p}empty-buffer`, Buffer.alloc(0)), { size: 0 });
      assert.deepEqual(await store.put(`${p}empty-stream`, streamOf(Buffer.alloc(0))), { size: 0 });
      for (const key of [`${p}empty-buffer`, `${p}empty-stream`]) {
        assert.equal((await readAll(await store.get(key))).length, 0);
        assert.equal((await store.head(key))?.size, 0);
      }
    });

    it('stores a 12 MiB stream in 5 MiB parts, reporting progress up to the size', async () => {
      const key = `${fresh()}big.bin`;
      const data = randomData(12 * MiB + 17);
      const progress: number[] = [];
      const res = await store.put(key, streamOf(data), { onProgress: (n) => progress.push(n) });
      assert.equal(res.size, data.length);
      assert.equal(sha256(await readAll(await store.get(key))), sha256(data));
      assert.equal((await store.head(key))?.size, data.length);
      assert.ok(progress.length >= 1);
      assert.deepEqual([...progress].sort((x, y) => x - y), progress, 'progress never goes back');
      assert.equal(progress.at(-1), data.length);
    });

    it('get of a missing key rejects with ObjectNotFoundError naming key and store', async () => {
      const key = `${fresh()}nothing-here`;
      await assert.rejects(store.get(key), (err: unknown) => {
        assert.ok(err instanceof ObjectNotFoundError);
        assert.equal(err.key, key);
        assert.match(err.message, new RegExp(`${key}.*${store.description.split(' ')[0]!.replace(/[/.*]/g, '\\$&')}`));
        return true;
      });
      assert.equal(await store.head(key), undefined);
    });

    it('lists 23 objects across pages of 5, in key order, under the prefix only', async () => {
      const p = fresh();
      const names = Array.from({ length: 23 }, (_, i) => `obj-${String(i).padStart(2, '0')}`);
      // Written out of order; neighbours outside the prefix must not show up.
      for (const n of [...names].reverse()) await store.put(`${p}a/${n}`, Buffer.from(n));
      await store.put(`${p}b/obj-00`, Buffer.from('other'));
      await store.put(`${p}a0`, Buffer.from('not under a/'));
      const before = b.listRequests();
      const listed = await collect(store.list(`${p}a/`));
      assert.deepEqual(
        listed.map((o) => o.key),
        names.map((n) => `${p}a/${n}`),
      );
      assert.ok(listed.every((o) => o.size === 6 && o.lastModified instanceof Date));
      assert.equal(b.listRequests() - before, 5, '23 keys in pages of 5');
    });

    it('lists a multiple of the page size, and an empty prefix', async () => {
      const p = fresh();
      for (let i = 0; i < 10; i++) await store.put(`${p}k${i}`, Buffer.from([i]));
      const before = b.listRequests();
      assert.deepEqual(
        (await collect(store.list(p))).map((o) => o.key),
        Array.from({ length: 10 }, (_, i) => `${p}k${i}`),
      );
      assert.ok(b.listRequests() - before <= 3);
      assert.deepEqual(await collect(store.list(`${p}none/`)), []);
    });

    it('deletes keys, and a missing key is not an error', async () => {
      const p = fresh();
      for (const n of ['x', 'y', 'z']) await store.put(`${p}${n}`, Buffer.from(n));
      await store.delete([`${p}x`, `${p}missing`, `${p}z`]);
      await store.delete([]);
      assert.deepEqual(
        (await collect(store.list(p))).map((o) => o.key),
        [`${p}y`],
      );
      assert.equal(await store.head(`${p}x`), undefined);
      await assert.rejects(store.get(`${p}z`), ObjectNotFoundError);
    });

    it('overwrites an object', async () => {
      const key = `${fresh()}manifest.json`;
      await store.put(key, Buffer.from('first version, longer'));
      await store.put(key, streamOf(Buffer.from('second')));
      assert.equal((await readAll(await store.get(key))).toString(), 'second');
      assert.equal((await store.head(key))?.size, 6);
      assert.equal((await collect(store.list(key))).length, 1);
    });

    it('a body that fails mid-stream rejects with its error and leaves no object', async () => {
      const key = `${fresh()}db.dump`;
      const body = stalledStream(randomData(6 * MiB));
      const putting = store.put(key, body);
      setTimeout(() => body.destroy(new Error('pg_dump exited with code 1')), 50);
      await assert.rejects(putting, /pg_dump exited with code 1/);
      assert.equal(await store.head(key), undefined);
      assert.deepEqual(await collect(store.list(key)), []);
    });

    it('an aborted upload rejects with AbortError, destroys the body and leaves no object', async () => {
      const key = `${fresh()}maildir.tar`;
      const body = stalledStream(randomData(6 * MiB));
      const abort = new AbortController();
      const putting = store.put(key, body, { signal: abort.signal, onProgress: () => abort.abort() });
      // Should no progress be reported, abort anyway.
      const timer = setTimeout(() => abort.abort(new Error('operator pressed ^C')), 2_000);
      await assert.rejects(putting, (err: Error) => err.name === 'AbortError' && err.message.includes(key));
      clearTimeout(timer);
      assert.ok(body.destroyed);
      assert.equal(await store.head(key), undefined);
      await assert.rejects(store.put(key, Buffer.from('late'), { signal: abort.signal }), { name: 'AbortError' });
      assert.equal(await store.head(key), undefined);
    });
  });
}
