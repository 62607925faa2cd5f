/**
 * Memory: a 50 MB message, generated and streamed (never held whole), parsed in a child process
 * of its own, whose peak RSS (getrusage maxrss: the whole process, Node itself included) must
 * stay under 200 MB. Run as `LMTP_PARSE_MEMORY=<shape> node --import tsx <this file>` the file is
 * that child: it prints {maxRssMb, ...} as JSON.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseForIndex } from '../../../lmtp-indexer/index/parse.ts';

const MB = 1024 * 1024;
const TOTAL = 50 * MB;
const LIMITS = { maxTextBytes: MB, snippetChars: 200, maxParts: 500, maxDepth: 20, maxHeaderBytes: 256 * 1024 };

/** Lines of `line` until `bytes`, in 64 KB chunks (what a spool file read stream gives). */
function* repeatLine(line: string, bytes: number): Generator<Buffer> {
  const chunk = Buffer.from(line.repeat(Math.floor((64 * 1024) / line.length)));
  for (let sent = 0; sent < bytes; sent += chunk.length) yield chunk;
}
/** How many lines repeatLine gives. */
const linesOf = (line: string, bytes: number): number => {
  const perChunk = Math.floor((64 * 1024) / line.length);
  return Math.ceil(bytes / (perChunk * line.length)) * perChunk;
};
const ZIP_LINE = `${'UEsDBBQAAAAIAA'.padEnd(76, 'x')}\r\n`;

const shapes: Record<string, () => Generator<Buffer>> = {
  /** The usual big message: some text, an HTML twin, and a big base64 attachment. */
  *mixed() {
    yield Buffer.from('From: a@b.example\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n');
    yield Buffer.from('--A\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n');
    yield* repeatLine('Quarterly figures: caf=C3=A9 revenue up, costs down, see the table below.\r\n', 4 * MB);
    yield Buffer.from('\r\n--A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n');
    yield* repeatLine('<tr><td><b>revenue</b></td><td><a href="https://x.example/q">up</a></td></tr>\r\n', 4 * MB);
    yield Buffer.from('\r\n--A--\r\n--M\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename="data.zip"\r\nContent-Transfer-Encoding: base64\r\n\r\n');
    yield* repeatLine(ZIP_LINE, TOTAL - 8 * MB);
    yield Buffer.from('\r\n--M--\r\n');
  },
  /** One 50 MB text/plain body: everything past the text limit is read and dropped. */
  *text() {
    yield Buffer.from('From: a@b.example\r\nSubject: big text\r\n\r\n');
    yield* repeatLine('lorem ipsum dolor sit amet, consectetur adipiscing elit sed do eiusmod\r\n', TOTAL);
  },
  /** One 50 MB HTML body, the most expensive text to read. */
  *html() {
    yield Buffer.from('From: a@b.example\r\nSubject: big html\r\nContent-Type: text/html\r\n\r\n');
    yield* repeatLine('<div class="row"><span>lorem</span> <i>ipsum</i> <a href="https://x.example/">dolor</a></div>\r\n', TOTAL);
  },
};

async function child(shape: string): Promise<void> {
  let bytes = 0;
  const input = Readable.from(
    (function* () {
      for (const chunk of shapes[shape]!()) {
        bytes += chunk.length;
        yield chunk;
      }
    })(),
  );
  const m = await parseForIndex(input, LIMITS);
  const out = {
    bytes,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    rssAfterMb: Math.round(process.memoryUsage().rss / MB),
    textBytes: Buffer.byteLength(m.text),
    attachments: m.attachments,
    problems: m.problems,
  };
  process.stdout.write(JSON.stringify(out));
}

function runChild(shape: string): Promise<{ bytes: number; maxRssMb: number; rssAfterMb: number; textBytes: number; attachments: unknown[]; problems: string[] }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(import.meta.url)],
      // Without the runner's NODE_TEST_CONTEXT, so the child prints only its JSON.
      { env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')), LMTP_PARSE_MEMORY: shape }, maxBuffer: MB },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))),
    );
  });
}

if (process.env.LMTP_PARSE_MEMORY) {
  await child(process.env.LMTP_PARSE_MEMORY);
} else {
  for (const shape of Object.keys(shapes)) {
    test(`a 50 MB message (${shape}) is parsed with the whole process under 200 MB RSS`, async (t) => {
      const r = await runChild(shape);
      t.diagnostic(`${shape}: ${(r.bytes / MB).toFixed(1)} MB message, peak RSS ${r.maxRssMb} MB, RSS after ${r.rssAfterMb} MB, ${r.textBytes} text bytes`);
      assert.ok(r.bytes >= TOTAL - 64 * 1024, 'the message really is 50 MB');
      assert.ok(r.maxRssMb < 200, `peak RSS ${r.maxRssMb} MB`);
      assert.ok(r.textBytes > 100_000 && r.textBytes <= MB);
      // 76 base64 characters a line: 57 bytes.
      if (shape === 'mixed') assert.deepEqual(r.attachments, [{ name: 'data.zip', contentType: 'application/zip', size: linesOf(ZIP_LINE, TOTAL - 8 * MB) * 57 }]);
    });
  }
}
