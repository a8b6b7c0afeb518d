// A local TON "network" for tests: the TON HTTP API v2 subset cocoon uses
// (sendBoc, runGetMethod, getAddressInformation) over the @ton/sandbox
// emulator. External messages run the real wallet code they carry and
// every resulting internal message runs to completion before sendBoc
// answers, so a reader sees the result at once.
//
//   node devnet/server.js [--port N] [--api-key KEY] [--fund ADDRESS=TON]...
//
// Prints one JSON line {"endpoint": "http://127.0.0.1:PORT/api/v2"} when
// ready. POST /devnet/fund {"address", "ton"} funds an address from a
// treasury (devnet only).
'use strict';

const http = require('node:http');
const { Blockchain } = require('@ton/sandbox');
const { Address, Cell, toNano, beginCell } = require('@ton/core');

function parseArgs(argv) {
  const out = { port: 0, apiKey: null, fund: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') out.port = Number(next());
    else if (a === '--api-key') out.apiKey = next();
    else if (a === '--fund') {
      const [address, ton] = next().split('=');
      out.fund.push({ address, ton: ton || '100' });
    } else throw new Error(`unknown argument ${a}`);
  }
  return out;
}

function stackIn(stack) {
  return (stack || []).map((e) => {
    if (!Array.isArray(e) || e[0] !== 'num') throw new Error(`stack entry ${JSON.stringify(e)}: only ["num", value] is supported`);
    return { type: 'int', value: BigInt(e[1]) };
  });
}

function hexInt(v) {
  return v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

function stackOut(items) {
  return items.map((t) => {
    switch (t.type) {
      case 'int':
        return ['num', hexInt(t.value)];
      case 'cell':
      case 'slice':
      case 'builder':
        return ['cell', { bytes: t.cell.toBoc().toString('base64') }];
      case 'null':
        return ['null', null];
      default:
        return [t.type, null];
    }
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const blockchain = await Blockchain.create();
  const treasury = await blockchain.treasury('devnet faucet', { balance: toNano('1000000') });

  async function fund(address, ton) {
    await treasury.send({ to: Address.parse(address), value: toNano(ton), bounce: false, body: beginCell().endCell() });
  }
  for (const f of args.fund) await fund(f.address, f.ton);

  const handlers = {
    async sendBoc(body) {
      const cell = Cell.fromBase64(body.boc);
      await blockchain.sendMessage(cell);
      return { '@type': 'ok' };
    },
    async runGetMethod(body) {
      const address = Address.parse(body.address);
      const contract = await blockchain.getContract(address);
      if (!contract.accountState || contract.accountState.type !== 'active') {
        return { '@type': 'smc.runResult', gas_used: 0, stack: [], exit_code: -13 };
      }
      try {
        const r = await blockchain.runGetMethod(address, body.method, stackIn(body.stack));
        return { '@type': 'smc.runResult', gas_used: Number(r.gasUsed), stack: stackOut(r.stack), exit_code: r.exitCode };
      } catch (e) {
        if (typeof e.exitCode === 'number') {
          return { '@type': 'smc.runResult', gas_used: 0, stack: [], exit_code: e.exitCode };
        }
        throw e;
      }
    },
    async getAddressInformation(_body, query) {
      const contract = await blockchain.getContract(Address.parse(query.get('address')));
      const type = contract.accountState ? contract.accountState.type : 'uninit';
      const state = { active: 'active', frozen: 'frozen' }[type] || 'uninitialized';
      const code = type === 'active' && contract.accountState.state.code ? contract.accountState.state.code.toBoc().toString('base64') : '';
      return { '@type': 'raw.fullAccountState', balance: contract.balance.toString(), state, code };
    },
  };

  const server = http.createServer(async (req, res) => {
    const reply = (status, obj) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    try {
      const url = new URL(req.url, 'http://devnet');
      let raw = '';
      for await (const chunk of req) raw += chunk;
      const body = raw ? JSON.parse(raw) : {};
      if (url.pathname === '/devnet/fund' && req.method === 'POST') {
        await fund(body.address, String(body.ton));
        return reply(200, { ok: true, result: {} });
      }
      const m = url.pathname.match(/^\/api\/v2\/(\w+)$/);
      const handler = m && handlers[m[1]];
      if (!handler) return reply(404, { ok: false, error: `no method ${url.pathname}`, code: 404 });
      if (args.apiKey && req.headers['x-api-key'] !== args.apiKey) {
        return reply(401, { ok: false, error: 'API key required', code: 401 });
      }
      return reply(200, { ok: true, result: await handler(body, url.searchParams) });
    } catch (e) {
      return reply(500, { ok: false, error: String(e && e.message ? e.message.split('\n')[0] : e), code: 500 });
    }
  });
  server.listen(args.port, '127.0.0.1', () => {
    console.log(JSON.stringify({ endpoint: `http://127.0.0.1:${server.address().port}/api/v2` }));
  });
}

main().catch((e) => {
  console.error(`devnet: ${e.message || e}`);
  process.exit(1);
});
