// Fees and gas of the registry's messages and get methods, and storage
// growth per record, in the @ton/sandbox emulator with its default
// (mainnet) configuration. Prints the tables BENCHMARKS.md quotes.
//
//   npm run bench
'use strict';

const { Dictionary, fromNano, toNano } = require('@ton/core');
const reg = require('../lib/registry');
const { withRoles, fakeMeasurements } = require('../lib/sandbox');

const MANIFEST = Buffer.alloc(32, 0x11);
const MODEL = Buffer.alloc(32, 0x22);

// Config param 18, the newest storage prices: nanoton per bit / cell per
// 65536 seconds on the basechain.
function storagePrices(blockchain) {
  const config = Dictionary.loadDirect(Dictionary.Keys.Int(32), Dictionary.Values.Cell(), blockchain.config);
  const prices = Dictionary.loadDirect(Dictionary.Keys.Uint(32), {
    serialize: () => { throw new Error('read only'); },
    parse: (s) => {
      if (s.loadUint(8) !== 0xcc) throw new Error('not storage_prices');
      s.loadUint(32);
      return { bit: s.loadUintBig(64), cell: s.loadUintBig(64) };
    },
  }, config.get(18));
  return prices.values()[prices.size - 1];
}

async function storage(f) {
  const sc = await f.blockchain.getContract(f.address);
  return sc.account.account.storageStats.used;
}

// What one message to the registry costs: the registry's transaction fees
// (compute + storage) plus the forwarding fee of the message to it.
function cost(r) {
  const fwd = r.tx.inMessage.info.forwardFee || 0n;
  return { gas: r.gasUsed, fee: r.totalFees + fwd };
}

function row(name, c, extra = '') {
  console.log(`| ${name} | ${c.gas} | ${fromNano(c.fee)} | ${extra} |`);
}

async function main() {
  const f = await withRoles();
  const prices = storagePrices(f.blockchain);
  console.log('| message | gas | fee (TON) | note |');
  console.log('|---|---|---|---|');
  const fresh = await withRoles();
  row('add publisher (owner)', cost(await fresh.send(fresh.owner, reg.roleBody(reg.OP.addPublisher, { account: fresh.stranger.address }))));

  const release = (ms, version = '0.1.0') => reg.publishBody({ manifestHash: MANIFEST, modelHash: MODEL, version, measurements: ms });
  let published = 0;
  let all = [];
  const before = await storage(f);
  for (const n of [1, 16, 32, 64]) {
    const ms = fakeMeasurements(n, 1000 + n);
    const r = await f.send(f.publisher, release(ms), toNano('1'));
    if (r.exitCode !== 0) throw new Error(`publish ${n}: exit ${r.exitCode}`);
    row(`publish, batch of ${n}`, cost(r), `registry held ${published} records`);
    published += n;
    all = all.concat(ms);
  }
  // One release = 256 shapes = eight 32-batches (MAX_BATCH in
  // measurements/src/registry/messages.rs); repeat to see growth.
  for (let release_i = 0; release_i < 16; release_i++) {
    const ms = fakeMeasurements(256, release_i);
    let gas = 0n, fee = 0n, maxGas = 0n;
    for (let i = 0; i < 256; i += 32) {
      const r = await f.send(f.publisher, release(ms.slice(i, i + 32), `1.${release_i}`), toNano('0.206'));
      if (r.exitCode !== 0) throw new Error(`publish: exit ${r.exitCode}`);
      const c = cost(r);
      gas += c.gas; fee += c.fee;
      if (c.gas > maxGas) maxGas = c.gas;
    }
    if (release_i === 0 || release_i === 3 || release_i === 15) {
      row(`publish a 256-shape release (8 × 32)`, { gas, fee }, `registry held ${published} records; largest batch ${maxGas} gas`);
    }
    published += 256;
    all = all.concat(ms);
  }
  const after = await storage(f);
  const newRecords = BigInt(published);
  const bits = (after.bits - before.bits) / newRecords;
  const cells = Number(after.cells - before.cells) / Number(newRecords);

  const target = all.slice(0, 64);
  row('endorse, batch of 32', cost(await f.send(f.auditor, reg.endorseBody({ measurements: target.slice(0, 32) }), toNano('1'))), `registry held ${published} records`);
  row('endorse, batch of 64', cost(await f.send(f.auditor, reg.endorseBody({ measurements: target.slice(32) }), toNano('1'))), '');
  row('endorse, batch of 1', cost(await f.send(f.auditor, reg.endorseBody({ measurements: all.slice(100, 101) }), toNano('1'))), '');
  row('revoke, batch of 32', cost(await f.send(f.publisher, reg.revokeBody({ measurements: all.slice(200, 232) }), toNano('1'))), '');
  row('revoke, batch of 64', cost(await f.send(f.publisher, reg.revokeBody({ measurements: all.slice(300, 364) }), toNano('1'))), '');
  const rejected = await f.send(f.stranger, release(fakeMeasurements(64, 77)), toNano('1'));
  row(`rejected publish (stranger, exit ${rejected.exitCode})`, cost(rejected), 'value bounced back minus this');

  console.log('');
  console.log('| get method | gas |');
  console.log('|---|---|');
  const m = reg.measurementArgs(target[0]);
  for (const [name, args] of [
    ['is_allowed', m],
    ['is_allowed_k', [...m, { type: 'int', value: 1n }]],
    ['endorsement_count', m],
    ['get_record', m],
    ['get_registry', []],
    ['is_publisher', reg.accountArgs(f.publisher.address)],
  ]) {
    const r = await f.get(name, args);
    console.log(`| ${name} | ${r.gasUsed} |`);
  }

  console.log('');
  const yearly = (b, c) => (b * prices.bit + c * prices.cell) * 31_536_000n / 65_536n;
  const perRecordYear = Number(yearly(after.bits - before.bits, after.cells - before.cells)) / published;
  console.log(`storage: ${published} records added ${after.cells - before.cells} cells and ${after.bits - before.bits} bits: ${cells.toFixed(2)} cells and ${bits} bits per record`);
  console.log(`storage fee at config param 18 (${prices.bit} nanoton/bit, ${prices.cell} nanoton/cell per 65536 s): ${(perRecordYear / 1e9).toFixed(6)} TON per record per year; whole registry (${after.cells} cells, ${after.bits} bits): ${fromNano(yearly(after.bits, after.cells))} TON per year`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
