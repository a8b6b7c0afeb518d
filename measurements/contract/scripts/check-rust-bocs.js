// Checks BOCs the Rust side wrote (cocoon-tests, tests/registry.rs) with
// @ton/core: each parses, has the hash Rust computed, and equals what this
// side builds from the same inputs. Prints one line per BOC; exits 1 on
// the first difference.
//
//   node scripts/check-rust-bocs.js FILE.json
'use strict';

const fs = require('node:fs');
const { Address, Cell, beginCell, loadMessage, storeMessage } = require('@ton/core');
const reg = require('../lib/registry');

function rebuild(entry) {
  const i = entry.inputs;
  switch (entry.kind) {
    case 'publish':
      return reg.publishBody({
        queryId: BigInt(i.queryId),
        manifestHash: Buffer.from(i.manifestHash, 'hex'),
        modelHash: Buffer.from(i.modelHash, 'hex'),
        version: i.version,
        measurements: i.measurements,
      });
    case 'revoke':
      return reg.revokeBody({ queryId: BigInt(i.queryId), measurements: i.measurements });
    case 'endorse':
      return reg.endorseBody({ queryId: BigInt(i.queryId), measurements: i.measurements });
    case 'role':
      return reg.roleBody(reg.OP[i.op], { queryId: BigInt(i.queryId), account: Address.parse(i.account) });
    case 'registry-data':
      return reg.registryData({ registryId: i.registryId, owner: Address.parse(i.owner) });
    case 'external': {
      // No independent builder for a signed wallet message: parse it as a
      // Message and write it back; the cell must not change.
      const parsed = loadMessage(Cell.fromBase64(entry.boc).beginParse());
      if (parsed.info.type !== 'external-in') throw new Error('not an external-in message');
      if (!parsed.info.dest.equals(Address.parse(i.wallet))) throw new Error(`addressed to ${parsed.info.dest}, not ${i.wallet}`);
      // cocoon puts state init and body in references of their own.
      return beginCell().store(storeMessage(parsed, { forceRef: true })).endCell();
    }
    default:
      throw new Error(`unknown kind ${entry.kind}`);
  }
}

const entries = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
let failed = false;
for (const e of entries) {
  const cell = Cell.fromBase64(e.boc);
  const parsed = cell.hash().toString('hex');
  const js = rebuild(e).hash().toString('hex');
  const ok = parsed === e.hash && js === e.hash;
  console.log(`${ok ? 'same' : 'DIFFERENT'} ${e.kind}: rust ${e.hash}, parsed ${parsed}, @ton/core ${js}`);
  if (!ok) failed = true;
  if (e.kind === 'registry-data') {
    const { address } = reg.registryInit({ registryId: e.inputs.registryId, owner: Address.parse(e.inputs.owner) });
    const same = address.equals(Address.parse(e.inputs.registryAddress));
    console.log(`${same ? 'same' : 'DIFFERENT'} registry address: rust ${e.inputs.registryAddress}, @ton/core ${address.toRawString()}`);
    if (!same) failed = true;
  }
}
process.exit(failed ? 1 : 0);
