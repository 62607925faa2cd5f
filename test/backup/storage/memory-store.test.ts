// MemoryStore's own hooks (the contract test covers what it shares with S3Store): injected put
// failures, the aborted-upload count, the call log and lazy paging.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../../backup/storage/memory-store.ts';
import { readAll, stalledStream, streamOf } from './helpers.ts';

describe('MemoryStore', () => {
  it('failNextPut fails the next put only, destroys the body, counts it and stores nothing', async () => {
    const store = new MemoryStore();
    const boom = new Error('disk full');
    store.failNextPut(boom);
    const body = streamOf(Buffer.from('data'));
    await assert.rejects(store.put('a', body), (err) => err === boom);
    assert.ok(body.destroyed);
    assert.equal(store.abortedUploads, 1);
    assert.equal(await store.head('a'), undefined);
    await store.put('a', Buffer.from('ok'));
    assert.equal(store.bytes('a')?.toString(), 'ok');
  });

  it('failNextPut after N bytes fails mid-stream, or at the end of a shorter body', async () => {
    const store = new MemoryStore();
    const progress: number[] = [];
    store.failNextPut(new Error('connection reset'), 10);
    await assert.rejects(store.put('b', streamOf(Buffer.alloc(100), 4), { onProgress: (n) => progress.push(n) }), /connection reset/);
    assert.deepEqual(progress, [4, 8]);
    store.failNextPut(new Error('late failure'), 1000);
    await assert.rejects(store.put('b', Buffer.alloc(10)), /late failure/);
    assert.equal(store.abortedUploads, 2);
    assert.deepEqual(store.keys(), []);
  });

  it('an abort while the body is stalled rejects at once and counts as aborted', async () => {
    const store = new MemoryStore({ name: 'unit' });
    const abort = new AbortController();
    const body = stalledStream(Buffer.alloc(10));
    const putting = store.put('c', body, { signal: abort.signal });
    setImmediate(() => abort.abort());
    await assert.rejects(putting, { name: 'AbortError', message: 'upload of c to memory://unit aborted' });
    assert.ok(body.destroyed);
    assert.equal(store.abortedUploads, 1);
  });

  it('keeps a copy: changing the Buffer after put does not change the object', async () => {
    const store = new MemoryStore();
    const buf = Buffer.from('abc');
    await store.put('d', buf);
    buf[0] = 0x7a;
    assert.equal((await readAll(await store.get('d'))).toString(), 'abc');
  });

  it('records calls, and reads list pages only as they are used', async () => {
    const store = new MemoryStore({ pageSize: 2 });
    for (const k of ['p/3', 'p/1', 'p/4', 'p/2', 'q/1']) await store.put(k, Buffer.from(k));
    for await (const o of store.list('p/')) {
      assert.equal(o.key, 'p/1');
      break;
    }
    await store.delete(['p/1']);
    const keys: string[] = [];
    for await (const o of store.list('p/')) keys.push(o.key);
    assert.deepEqual(keys, ['p/2', 'p/3', 'p/4']);
    assert.deepEqual(store.calls.slice(5), [
      { op: 'list-page', key: 'p/', marker: undefined },
      { op: 'delete', key: 'p/1' },
      { op: 'list-page', key: 'p/', marker: undefined },
      { op: 'list-page', key: 'p/', marker: 'p/3' },
    ]);
  });

  it('orders keys by UTF-8 bytes, as S3 does', async () => {
    const store = new MemoryStore();
    // U+FF5E sorts below U+1F600 in UTF-8, above it in UTF-16 code units.
    for (const k of ['k/\u{1F600}', 'k/\uFF5E', 'k/z']) await store.put(k, Buffer.alloc(1));
    const keys: string[] = [];
    for await (const o of store.list('k/')) keys.push(o.key);
    assert.deepEqual(keys, ['k/z', 'k/\uFF5E', 'k/\u{1F600}']);
  });
});
