// Compiles registry.tolk with the pinned @ton/tolk-js and writes (--write)
// or checks (--check) build/registry.compiled.json, the code the Rust side
// deploys and whose hash the docs quote. Also a library for the tests.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { runTolkCompiler, getTolkCompilerVersion } = require('@ton/tolk-js');

const CONTRACT_DIR = path.join(__dirname, '..');
const COMPILED = path.join(CONTRACT_DIR, 'build', 'registry.compiled.json');

async function compileRegistry() {
  const result = await runTolkCompiler({
    entrypointFileName: 'registry.tolk',
    fsReadCallback: (p) => fs.readFileSync(path.join(CONTRACT_DIR, p), 'utf-8'),
  });
  if (result.status === 'error') {
    throw new Error(`registry.tolk does not compile:\n${result.message}`);
  }
  return {
    tolkVersion: await getTolkCompilerVersion(),
    codeHashHex: result.codeHashHex.toLowerCase(),
    codeBoc64: result.codeBoc64,
  };
}

function readCompiled() {
  return JSON.parse(fs.readFileSync(COMPILED, 'utf-8'));
}

async function main() {
  const mode = process.argv[2];
  const fresh = await compileRegistry();
  if (mode === '--write') {
    fs.writeFileSync(COMPILED, JSON.stringify(fresh, null, 2) + '\n');
    console.log(`wrote ${path.relative(process.cwd(), COMPILED)}: Tolk ${fresh.tolkVersion}, code hash ${fresh.codeHashHex}`);
  } else if (mode === '--check') {
    const recorded = readCompiled();
    if (recorded.codeHashHex !== fresh.codeHashHex || recorded.codeBoc64 !== fresh.codeBoc64) {
      console.error(`build/registry.compiled.json is stale: recorded ${recorded.codeHashHex}, compiled ${fresh.codeHashHex}; run \`npm run build\``);
      process.exit(1);
    }
    console.log(`code hash ${fresh.codeHashHex} reproduced`);
  } else {
    console.error('usage: node scripts/compile.js --write | --check');
    process.exit(2);
  }
}

module.exports = { compileRegistry, readCompiled, COMPILED };

if (require.main === module) {
  main().catch((e) => {
    console.error(e.message || e);
    process.exit(1);
  });
}
