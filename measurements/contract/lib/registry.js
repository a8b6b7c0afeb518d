// Message and storage layouts of registry.tolk for JavaScript: the tests,
// the benchmarks and the devnet build cells with these, and the Rust side
// (measurements/src/registry/messages.rs) writes the same bits.
'use strict';

const { Address, BitString, beginCell, Cell, Dictionary, contractAddress } = require('@ton/core');
const { readCompiled } = require('../scripts/compile');

const OP = {
  publish: 0xc0c00001,
  revoke: 0xc0c00002,
  endorse: 0xc0c00003,
  addPublisher: 0xc0c00010,
  removePublisher: 0xc0c00011,
  addAuditor: 0xc0c00012,
  removeAuditor: 0xc0c00013,
  transferOwnership: 0xc0c00020,
};

// docs/registry.md lists these; the tests check each one.
const EXIT = {
  cellUnderflow: 9,
  notOwner: 100,
  notPublisher: 101,
  notAuditor: 102,
  notOwnerOrPublisher: 103,
  conflict: 104,
  unknownMeasurement: 105,
  revoked: 106,
  emptyBatch: 107,
  badVersion: 108,
  noSuchRole: 109,
  unknownOp: 0xffff,
};

function registryCode() {
  return Cell.fromBase64(readCompiled().codeBoc64);
}

// The initial storage: owner, no publishers, auditors, records or endorsements.
function registryData({ registryId, owner }) {
  return beginCell()
    .storeUint(registryId, 32)
    .storeAddress(owner)
    .storeBit(0)
    .storeBit(0)
    .storeBit(0)
    .storeBit(0)
    .endCell();
}

function registryInit(params) {
  const init = { code: registryCode(), data: registryData(params) };
  return { init, address: contractAddress(0, init) };
}

function measurementBuffer(m) {
  const b = Buffer.isBuffer(m) ? m : Buffer.from(m, 'hex');
  if (b.length !== 48) throw new Error(`a measurement has 48 bytes, got ${b.length}`);
  return b;
}

// The set of measurements carried by publish, revoke and endorse.
function measurementSet(measurements) {
  const dict = Dictionary.empty(Dictionary.Keys.BitString(384), Dictionary.Values.Bool());
  for (const m of measurements) {
    dict.set(new BitString(measurementBuffer(m), 0, 384), true);
  }
  if (dict.size === 0) return beginCell().storeBit(0);
  return beginCell().storeDict(dict);
}

function versionCell(version) {
  return beginCell().storeBuffer(Buffer.from(version, 'utf-8')).endCell();
}

function publishBody({ queryId = 0n, manifestHash, modelHash, version, measurements }) {
  return beginCell()
    .storeUint(OP.publish, 32)
    .storeUint(queryId, 64)
    .storeBuffer(manifestHash, 32)
    .storeBuffer(modelHash, 32)
    .storeRef(versionCell(version))
    .storeBuilder(measurementSet(measurements))
    .endCell();
}

function setBody(op, { queryId = 0n, measurements }) {
  return beginCell().storeUint(op, 32).storeUint(queryId, 64).storeBuilder(measurementSet(measurements)).endCell();
}

function revokeBody(args) {
  return setBody(OP.revoke, args);
}

function endorseBody(args) {
  return setBody(OP.endorse, args);
}

function roleBody(op, { queryId = 0n, account }) {
  return beginCell().storeUint(op, 32).storeUint(queryId, 64).storeAddress(account).endCell();
}

// [hi, lo] get-method arguments of a measurement.
function measurementArgs(m) {
  const b = measurementBuffer(m);
  return [
    { type: 'int', value: BigInt('0x' + b.subarray(0, 16).toString('hex')) },
    { type: 'int', value: BigInt('0x' + b.subarray(16).toString('hex')) },
  ];
}

function accountArgs(address) {
  return [
    { type: 'int', value: BigInt(address.workChain) },
    { type: 'int', value: BigInt('0x' + address.hash.toString('hex')) },
  ];
}

module.exports = {
  OP,
  EXIT,
  registryCode,
  registryData,
  registryInit,
  measurementSet,
  versionCell,
  publishBody,
  revokeBody,
  endorseBody,
  roleBody,
  measurementArgs,
  accountArgs,
  Address,
};
