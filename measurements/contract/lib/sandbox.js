// A registry deployed in the @ton/sandbox emulator with an owner, a
// publisher and an auditor: the starting point of the tests and benchmarks.
'use strict';

const { Blockchain } = require('@ton/sandbox');
const { toNano } = require('@ton/core');
const reg = require('./registry');

// The compute phase of the registry's transaction in a send result.
function registryTx(result, address) {
  const txs = result.transactions.filter((t) => t.inMessage && t.inMessage.info.dest && t.inMessage.info.dest.equals && t.inMessage.info.dest.equals(address));
  if (txs.length !== 1) throw new Error(`expected one registry transaction, found ${txs.length}`);
  const tx = txs[0];
  const compute = tx.description.computePhase;
  return {
    tx,
    exitCode: compute.type === 'vm' ? compute.exitCode : null,
    success: compute.type === 'vm' && compute.success,
    gasUsed: compute.type === 'vm' ? compute.gasUsed : 0n,
    totalFees: tx.totalFees.coins,
    computeFees: compute.type === 'vm' ? compute.gasFees : 0n,
  };
}

async function deployedRegistry({ registryId = 1, now = 1_760_000_000 } = {}) {
  const blockchain = await Blockchain.create();
  blockchain.now = now;
  const owner = await blockchain.treasury('owner');
  const publisher = await blockchain.treasury('publisher');
  const auditor = await blockchain.treasury('auditor');
  const stranger = await blockchain.treasury('stranger');
  const { init, address } = reg.registryInit({ registryId, owner: owner.address });
  const deploy = await owner.send({ to: address, value: toNano('1'), init, bounce: false });
  const d = registryTx(deploy, address);
  if (!d.success) throw new Error(`deploy failed with exit code ${d.exitCode}`);
  const send = async (from, body, value = toNano('0.5')) => registryTx(await from.send({ to: address, value, body, bounce: true }), address);
  const get = async (method, args = []) => blockchain.runGetMethod(address, method, args);
  const dataHash = async () => (await blockchain.getContract(address)).accountState.state.data.hash().toString('hex');
  return { blockchain, owner, publisher, auditor, stranger, address, send, get, dataHash };
}

async function withRoles(opts) {
  const f = await deployedRegistry(opts);
  for (const [op, who] of [[reg.OP.addPublisher, f.publisher], [reg.OP.addAuditor, f.auditor]]) {
    const r = await f.send(f.owner, reg.roleBody(op, { account: who.address }));
    if (!r.success) throw new Error(`granting a role failed with exit code ${r.exitCode}`);
  }
  return f;
}

// Deterministic, distinct measurements for tests and benchmarks.
function fakeMeasurements(n, seed = 0) {
  const { createHash } = require('node:crypto');
  return Array.from({ length: n }, (_, i) =>
    Buffer.concat([createHash('sha512').update(`cocoon test measurement ${seed} ${i}`).digest()]).subarray(0, 48),
  );
}

module.exports = { registryTx, deployedRegistry, withRoles, fakeMeasurements };
