// SMFIC_OPTNEG: version, actions and protocol flags are the intersection of the MTA's offer and
// the handler's needs; SETSYMLIST only from version 6 on and only when offered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HandlerNeeds, Stage } from '../../../milter/handler.ts';
import { MilterProtocolError } from '../../../milter/protocol/errors.ts';
import { NO_REPLY_FLAG, SKIP_FLAG, negotiate } from '../../../milter/protocol/negotiate.ts';
import { encodeResponse } from '../../../milter/protocol/responses.ts';

// libmilter's mfdef.h values, written out rather than taken from constants.ts.
const SMFIF_ADDHDRS = 0x01;
const SMFIF_CHGBODY = 0x02;
const SMFIF_CHGHDRS = 0x10;
const SMFIF_QUARANTINE = 0x20;
const SMFIF_SETSYMLIST = 0x100;
const SMFIP_NOHDRS = 0x20;
const SMFIP_NR_HDR = 0x80;
const SMFIP_NODATA = 0x200;
const SMFIP_SKIP = 0x400;
const SMFIP_NR_CONN = 0x1000;
const SMFIP_NR_RCPT = 0x8000;
const SMFIP_HDR_LEADSPC = 0x100000;
/** What Postfix 3.x offers: every action, every protocol flag but SMFIP_RCPT_REJ. */
const POSTFIX = { version: 6, actions: 0x1ff, protocol: 0x1ff7ff };

const needs = (over: Partial<HandlerNeeds> = {}): HandlerNeeds => ({
  actions: SMFIF_ADDHDRS | SMFIF_CHGHDRS,
  skip: new Set<Stage>(),
  noReply: new Set<Stage>(),
  macros: { 0: ['j', '{client_addr}'], 4: ['i'] },
  ...over,
});

const STAGE_FLAGS: Array<[Stage, number, number]> = [
  ['connect', 0x1, 0x1000],
  ['helo', 0x2, 0x2000],
  ['mail', 0x4, 0x4000],
  ['rcpt', 0x8, 0x8000],
  ['body', 0x10, 0x80000],
  ['header', 0x20, 0x80],
  ['eoh', 0x40, 0x40000],
  ['unknown', 0x100, 0x20000],
  ['data', 0x200, 0x10000],
];

for (const [stage, skip, noReply] of STAGE_FLAGS) {
  test(`stage ${stage}: SMFIP_NO* 0x${skip.toString(16)}, SMFIP_NR_* 0x${noReply.toString(16)}`, () => {
    assert.equal(SKIP_FLAG[stage], skip);
    assert.equal(NO_REPLY_FLAG[stage], noReply);
  });
}

test('version 6 MTA offering everything: our needs, leading space, SKIP and the macro lists', () => {
  const { reply, negotiated } = negotiate(POSTFIX, needs({ skip: new Set(['data']), noReply: new Set(['header', 'connect']) }));
  const protocol = SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NODATA | SMFIP_NR_HDR | SMFIP_NR_CONN;
  const actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST;
  assert.deepEqual(negotiated, { version: 6, actions, protocol });
  assert.deepEqual(reply, { kind: 'optneg', version: 6, actions, protocol, macros: { 0: ['j', '{client_addr}'], 4: ['i'] } });
  // And on the wire: 12 bytes, then (stage, list) pairs. 0x27 = 1 + 12 + (4 + 16) + (4 + 2).
  const bytes = Buffer.concat([
    Buffer.from([0, 0, 0, 0x27, 0x4f, 0, 0, 0, 6, 0, 0, 0x01, 0x11, 0, 0x10, 0x16, 0x80]),
    Buffer.from([0, 0, 0, 0]),
    Buffer.from('j {client_addr}\0', 'latin1'),
    Buffer.from([0, 0, 0, 4]),
    Buffer.from('i\0', 'latin1'),
  ]);
  assert.deepEqual(encodeResponse(reply), bytes);
});

test('a version 2 MTA gets version 2 and no symbol list, even if it claims SETSYMLIST', () => {
  const { reply, negotiated } = negotiate({ version: 2, actions: 0x1ff, protocol: 0x7f }, needs());
  assert.equal(negotiated.version, 2);
  assert.equal(reply.kind, 'optneg');
  assert.ok(!('macros' in reply), 'no macros in a version 2 reply');
  assert.equal(negotiated.actions & SMFIF_SETSYMLIST, 0);
  assert.equal(negotiated.actions, SMFIF_ADDHDRS | SMFIF_CHGHDRS);
  // Bytes: exactly 12 bytes of payload, nothing after.
  assert.deepEqual(encodeResponse(reply), Buffer.from([0, 0, 0, 0x0d, 0x4f, 0, 0, 0, 2, 0, 0, 0, 0x11, 0, 0, 0, 0]));
});

test('versions 3 to 5 are accepted; only 6 gets the symbol list', () => {
  for (const version of [3, 4, 5]) {
    const { reply, negotiated } = negotiate({ ...POSTFIX, version }, needs());
    assert.equal(negotiated.version, version);
    assert.ok(!('macros' in reply));
  }
});

test('a newer MTA is answered with version 6', () => {
  assert.equal(negotiate({ ...POSTFIX, version: 7 }, needs()).negotiated.version, 6);
  assert.equal(negotiate({ ...POSTFIX, version: 0xffffffff }, needs()).negotiated.version, 6);
});

test('actions are the intersection of offer and needs', () => {
  const n = needs({ actions: SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE });
  const { negotiated } = negotiate({ ...POSTFIX, actions: SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_QUARANTINE }, n);
  assert.equal(negotiated.actions, SMFIF_ADDHDRS | SMFIF_QUARANTINE);
});

test('SETSYMLIST is never taken from the handler needs, only granted by the offer', () => {
  const n = needs({ actions: SMFIF_ADDHDRS | SMFIF_SETSYMLIST, macros: {} });
  assert.equal(negotiate(POSTFIX, n).negotiated.actions, SMFIF_ADDHDRS, 'no macros wanted: no SETSYMLIST');
  const offerWithout = { ...POSTFIX, actions: 0x1ff & ~SMFIF_SETSYMLIST };
  const { reply, negotiated } = negotiate(offerWithout, needs());
  assert.equal(negotiated.actions & SMFIF_SETSYMLIST, 0);
  assert.ok(!('macros' in reply), 'SETSYMLIST not offered: no macro lists');
  const emptyLists = negotiate(POSTFIX, needs({ macros: { 0: [], 5: [] } }));
  assert.ok(!('macros' in emptyLists.reply), 'only empty lists: nothing to request');
});

test('NR_* and NO* flags are set only when the MTA offers them', () => {
  const n = needs({ skip: new Set(['header', 'data']), noReply: new Set(['connect', 'rcpt', 'header']) });
  const bare = negotiate({ version: 6, actions: 0x1ff, protocol: 0 }, n).negotiated;
  assert.equal(bare.protocol, 0, 'an MTA offering no flags gets none, not even HDR_LEADSPC or SKIP');
  const someNr = negotiate({ version: 6, actions: 0x1ff, protocol: SMFIP_NR_RCPT | SMFIP_NOHDRS | SMFIP_SKIP }, n).negotiated;
  assert.equal(someNr.protocol, SMFIP_NR_RCPT | SMFIP_NOHDRS | SMFIP_SKIP);
  const v2 = negotiate({ version: 2, actions: 0x3f, protocol: 0x7f }, n).negotiated;
  assert.equal(v2.protocol, SMFIP_NOHDRS, 'an old MTA without NR_* flags gets only the NO* it knows');
});

test('flags the handler does not need are not taken even if offered', () => {
  const { negotiated } = negotiate(POSTFIX, needs());
  assert.equal(negotiated.protocol, SMFIP_HDR_LEADSPC | SMFIP_SKIP);
});

test('versions below 2 are rejected with a protocol error', () => {
  for (const version of [0, 1]) {
    assert.throws(
      () => negotiate({ ...POSTFIX, version }, needs()),
      (err: unknown) => err instanceof MilterProtocolError && err.reason === 'unsupported milter version' && err.message.endsWith(`: ${version}`),
    );
  }
});

test('useNoReply false: no SMFIP_NR_* even when needed and offered; SMFIP_NO* still', () => {
  const n = needs({ skip: new Set(['data']), noReply: new Set(['connect', 'header']) });
  const { negotiated } = negotiate(POSTFIX, n, false);
  assert.equal(negotiated.protocol, SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NODATA);
});
