// The registry contract in the real TVM emulator (@ton/sandbox).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { beginCell, toNano } = require('@ton/core');
const { internal } = require('@ton/sandbox');
const reg = require('../lib/registry');
const { withRoles, fakeMeasurements } = require('../lib/sandbox');
const { compileRegistry, readCompiled } = require('../scripts/compile');

const MANIFEST = Buffer.alloc(32, 0x11);
const MODEL = Buffer.alloc(32, 0x22);
const release = (measurements, over = {}) =>
  reg.publishBody({ manifestHash: MANIFEST, modelHash: MODEL, version: '0.1.0', measurements, ...over });

async function isAllowed(f, m) {
  return (await f.get('is_allowed', reg.measurementArgs(m))).stackReader.readBoolean();
}

async function record(f, m) {
  const s = (await f.get('get_record', reg.measurementArgs(m))).stackReader;
  return {
    status: s.readNumber(),
    manifestHash: s.readBigNumber(),
    modelHash: s.readBigNumber(),
    publishedAt: s.readNumber(),
    workchain: s.readNumber(),
    publisherHash: s.readBigNumber(),
    version: ((c) => c.loadBuffer(c.remainingBits / 8))(s.readCell().beginParse()),
  };
}

async function endorsements(f, m) {
  return (await f.get('endorsement_count', reg.measurementArgs(m))).stackReader.readNumber();
}

async function rejected(f, from, body, exitCode, value = toNano("1")) {
  const before = await f.dataHash();
  const r = await f.send(from, body, value);
  assert.equal(r.exitCode, exitCode, `exit code ${r.exitCode}, expected ${exitCode}`);
  assert.equal(r.success, false);
  assert.equal(await f.dataHash(), before, 'a rejected message changed the storage');
}

test('recompiling registry.tolk gives the recorded code hash', async () => {
  const fresh = await compileRegistry();
  const recorded = readCompiled();
  assert.equal(fresh.codeHashHex, recorded.codeHashHex, 'run `npm run build` and commit build/registry.compiled.json');
  assert.equal(fresh.codeBoc64, recorded.codeBoc64);
  assert.equal(reg.registryCode().hash().toString('hex'), recorded.codeHashHex);
});

test('a publisher publishes a batch; every measurement is allowed with its record', async () => {
  const f = await withRoles();
  const ms = fakeMeasurements(8);
  const other = fakeMeasurements(1, 99)[0];
  assert.equal(await isAllowed(f, ms[0]), false);
  const r = await f.send(f.publisher, release(ms));
  assert.equal(r.exitCode, 0);
  for (const m of ms) assert.equal(await isAllowed(f, m), true);
  assert.equal(await isAllowed(f, other), false);
  const rec = await record(f, ms[3]);
  assert.equal(rec.status, 1);
  assert.equal(rec.manifestHash, BigInt('0x' + MANIFEST.toString('hex')));
  assert.equal(rec.modelHash, BigInt('0x' + MODEL.toString('hex')));
  assert.equal(rec.publishedAt, f.blockchain.now);
  assert.equal(rec.workchain, 0);
  assert.equal(rec.publisherHash, BigInt('0x' + f.publisher.address.hash.toString('hex')));
  assert.equal(rec.version.toString('utf-8'), '0.1.0');
  const unknown = await record(f, other);
  assert.equal(unknown.status, 0);
  assert.equal(unknown.manifestHash, 0n);
});

test('publishing the same release again changes nothing; other data for a measurement is a conflict', async () => {
  const f = await withRoles();
  const ms = fakeMeasurements(4);
  assert.equal((await f.send(f.publisher, release(ms))).exitCode, 0);
  const before = await f.dataHash();
  f.blockchain.now += 100;
  assert.equal((await f.send(f.publisher, release(ms))).exitCode, 0);
  assert.equal(await f.dataHash(), before, 'a retried publish rewrote the records');
  await rejected(f, f.publisher, release([ms[1]], { manifestHash: Buffer.alloc(32, 0x33) }), reg.EXIT.conflict);
  await rejected(f, f.publisher, release([ms[1]], { modelHash: Buffer.alloc(32, 0x44) }), reg.EXIT.conflict);
  await rejected(f, f.publisher, release([ms[1]], { version: '0.1.1' }), reg.EXIT.conflict);
  // A batch with one conflicting measurement publishes none of the others.
  const fresh = fakeMeasurements(2, 7);
  await rejected(f, f.publisher, release([...fresh, ms[0]], { version: '9' }), reg.EXIT.conflict);
  assert.equal(await isAllowed(f, fresh[0]), false);
});

test('only publishers publish', async () => {
  const f = await withRoles();
  const ms = fakeMeasurements(2);
  for (const who of [f.stranger, f.auditor, f.owner]) {
    await rejected(f, who, release(ms), reg.EXIT.notPublisher);
  }
  assert.equal(await isAllowed(f, ms[0]), false);
});

test('malformed messages are rejected without a state change', async () => {
  const f = await withRoles();
  const ms = fakeMeasurements(2);
  const full = release(ms).beginParse();
  const truncated = beginCell().storeBits(full.loadBits(32 + 64 + 100)).endCell();
  await rejected(f, f.publisher, truncated, reg.EXIT.cellUnderflow);
  await rejected(f, f.publisher, release([]), reg.EXIT.emptyBatch);
  await rejected(f, f.publisher, release(ms, { version: '' }), reg.EXIT.badVersion);
  await rejected(f, f.publisher, release(ms, { version: 'v'.repeat(65) }), reg.EXIT.badVersion);
  await rejected(f, f.stranger, beginCell().storeUint(0xdeadbeef, 32).endCell(), reg.EXIT.unknownOp);
  await rejected(f, f.stranger, beginCell().storeUint(1, 8).endCell(), reg.EXIT.unknownOp);
  await rejected(f, f.publisher, reg.revokeBody({ measurements: [] }), reg.EXIT.emptyBatch);
});

test('an empty body or a comment tops the balance up', async () => {
  const f = await withRoles();
  const before = await f.dataHash();
  assert.equal((await f.send(f.stranger, beginCell().endCell())).exitCode, 0);
  const comment = beginCell().storeUint(0, 32).storeStringTail('storage').endCell();
  assert.equal((await f.send(f.stranger, comment)).exitCode, 0);
  assert.equal(await f.dataHash(), before);
});

test('revoking makes a measurement disallowed, for good', async () => {
  const f = await withRoles();
  const ms = fakeMeasurements(3);
  await f.send(f.publisher, release(ms));
  await rejected(f, f.stranger, reg.revokeBody({ measurements: [ms[0]] }), reg.EXIT.notOwnerOrPublisher);
  await rejected(f, f.auditor, reg.revokeBody({ measurements: [ms[0]] }), reg.EXIT.notOwnerOrPublisher);
  await rejected(f, f.publisher, reg.revokeBody({ measurements: [ms[0], fakeMeasurements(1, 5)[0]] }), reg.EXIT.unknownMeasurement);
  assert.equal(await isAllowed(f, ms[0]), true);
  assert.equal((await f.send(f.publisher, reg.revokeBody({ measurements: [ms[0]] }))).exitCode, 0);
  assert.equal(await isAllowed(f, ms[0]), false);
  assert.equal((await record(f, ms[0])).status, 2);
  assert.equal(await isAllowed(f, ms[1]), true);
  // The owner may revoke too; revoking twice is a no-op.
  assert.equal((await f.send(f.owner, reg.revokeBody({ measurements: [ms[0], ms[1]] }))).exitCode, 0);
  assert.equal(await isAllowed(f, ms[1]), false);
  // Publishing the same release again does not revive it.
  assert.equal((await f.send(f.publisher, release(ms))).exitCode, 0);
  assert.equal(await isAllowed(f, ms[0]), false);
  assert.equal(await isAllowed(f, ms[2]), true);
});

test('auditors endorse; k-of-n counts only current auditors', async () => {
  const f = await withRoles();
  const ms = fakeMeasurements(2);
  await f.send(f.publisher, release(ms));
  const k = async (m, n) =>
    (await f.get('is_allowed_k', [...reg.measurementArgs(m), { type: 'int', value: BigInt(n) }])).stackReader.readBoolean();
  assert.equal(await endorsements(f, ms[0]), 0);
  assert.equal(await k(ms[0], 0), true);
  assert.equal(await k(ms[0], 1), false);
  await rejected(f, f.publisher, reg.endorseBody({ measurements: [ms[0]] }), reg.EXIT.notAuditor);
  await rejected(f, f.auditor, reg.endorseBody({ measurements: fakeMeasurements(1, 3) }), reg.EXIT.unknownMeasurement);
  assert.equal((await f.send(f.auditor, reg.endorseBody({ measurements: [ms[0]] }))).exitCode, 0);
  assert.equal(await endorsements(f, ms[0]), 1);
  assert.equal(await endorsements(f, ms[1]), 0);
  assert.equal(await k(ms[0], 1), true);
  assert.equal(await k(ms[0], 2), false);
  // A second auditor; endorsing twice counts once.
  const second = await f.blockchain.treasury('auditor 2');
  await f.send(f.owner, reg.roleBody(reg.OP.addAuditor, { account: second.address }));
  await f.send(second, reg.endorseBody({ measurements: ms }));
  await f.send(second, reg.endorseBody({ measurements: ms }));
  assert.equal(await endorsements(f, ms[0]), 2);
  assert.equal(await endorsements(f, ms[1]), 1);
  assert.equal(await k(ms[0], 2), true);
  // Removing an auditor withdraws its endorsements.
  assert.equal((await f.send(f.owner, reg.roleBody(reg.OP.removeAuditor, { account: second.address }))).exitCode, 0);
  assert.equal(await endorsements(f, ms[0]), 1);
  assert.equal(await endorsements(f, ms[1]), 0);
  // Revoked measurements take no endorsements and are not allowed at any k.
  await f.send(f.publisher, reg.revokeBody({ measurements: [ms[0]] }));
  await rejected(f, f.auditor, reg.endorseBody({ measurements: [ms[0]] }), reg.EXIT.revoked);
  assert.equal(await k(ms[0], 0), false);
});

test('only the owner manages roles and ownership', async () => {
  const f = await withRoles();
  const ops = [reg.OP.addPublisher, reg.OP.removePublisher, reg.OP.addAuditor, reg.OP.removeAuditor];
  for (const op of ops) {
    for (const who of [f.publisher, f.auditor, f.stranger]) {
      await rejected(f, who, reg.roleBody(op, { account: who.address }), reg.EXIT.notOwner);
    }
  }
  await rejected(f, f.stranger, reg.roleBody(reg.OP.transferOwnership, { account: f.stranger.address }), reg.EXIT.notOwner);
  await rejected(f, f.owner, reg.roleBody(reg.OP.removePublisher, { account: f.stranger.address }), reg.EXIT.noSuchRole);
  await rejected(f, f.owner, reg.roleBody(reg.OP.removeAuditor, { account: f.publisher.address }), reg.EXIT.noSuchRole);
  const isRole = async (method, who) => (await f.get(method, reg.accountArgs(who.address))).stackReader.readBoolean();
  assert.equal(await isRole('is_publisher', f.publisher), true);
  assert.equal(await isRole('is_auditor', f.auditor), true);
  assert.equal(await isRole('is_publisher', f.stranger), false);
  assert.equal((await f.send(f.owner, reg.roleBody(reg.OP.removePublisher, { account: f.publisher.address }))).exitCode, 0);
  assert.equal(await isRole('is_publisher', f.publisher), false);
  await rejected(f, f.publisher, release(fakeMeasurements(1)), reg.EXIT.notPublisher);
  // Ownership moves; the old owner loses its rights.
  assert.equal((await f.send(f.owner, reg.roleBody(reg.OP.transferOwnership, { account: f.stranger.address }))).exitCode, 0);
  const info = (await f.get('get_registry')).stackReader;
  assert.equal(info.readNumber(), 1);
  assert.equal(info.readNumber(), 0);
  assert.equal(info.readBigNumber(), BigInt('0x' + f.stranger.address.hash.toString('hex')));
  await rejected(f, f.owner, reg.roleBody(reg.OP.addPublisher, { account: f.owner.address }), reg.EXIT.notOwner);
  assert.equal((await f.send(f.stranger, reg.roleBody(reg.OP.addPublisher, { account: f.owner.address }))).exitCode, 0);
});

test('a rejected bounceable message returns its value to the sender', async () => {
  const f = await withRoles();
  const result = await f.stranger.send({ to: f.address, value: toNano('1'), body: release(fakeMeasurements(1)), bounce: true });
  const bounced = result.transactions.find((t) => t.inMessage.info.type === 'internal' && t.inMessage.info.bounced);
  assert.ok(bounced, 'no bounce came back');
  assert.ok(bounced.inMessage.info.dest.equals(f.stranger.address));
  assert.ok(bounced.inMessage.info.value.coins > toNano('0.99'));
});

test('a bounced message to the registry is accepted and changes nothing', async () => {
  const f = await withRoles();
  const before = await f.dataHash();
  const result = await f.blockchain.sendMessage(
    internal({ from: f.publisher.address, to: f.address, value: toNano('0.1'), bounce: false, bounced: true, body: beginCell().storeUint(0xffffffff, 32).storeUint(reg.OP.publish, 32).endCell() }),
  );
  const tx = result.transactions[0];
  assert.equal(tx.description.computePhase.exitCode, 0);
  assert.equal(await f.dataHash(), before);
});

test('256 shapes publish as four 64-measurement messages; a batch out of gas changes nothing', async () => {
  const f = await withRoles();
  const ms = fakeMeasurements(256);
  for (let i = 0; i < 256; i += 64) {
    const r = await f.send(f.publisher, release(ms.slice(i, i + 64)), toNano('1'));
    assert.equal(r.exitCode, 0, `batch at ${i}: exit ${r.exitCode}`);
    assert.ok(r.gasUsed < 600_000n, `a 64 batch took ${r.gasUsed} gas`);
  }
  for (const m of [ms[0], ms[100], ms[255]]) assert.equal(await isAllowed(f, m), true);
  // 256 at once exceeds the 1M gas limit of a basechain transaction: the
  // whole batch fails (exit -14) and no record is written.
  const more = fakeMeasurements(256, 1);
  await rejected(f, f.publisher, release(more, { version: '0.2.0' }), -14);
  assert.equal(await isAllowed(f, more[0]), false);
});
