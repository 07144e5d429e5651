// Compiles contracts/EnergyLedger.sol with solc-js (no compiler download) and prints
// {"abi": [...], "bytecode": "0x...", "solc": "<version>"} on stdout; errors go to stderr, exit 1.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const NAME = "EnergyLedger";
const source = path.join(__dirname, "contracts", `${NAME}.sol`);
const input = {
  language: "Solidity",
  sources: { [`${NAME}.sol`]: { content: fs.readFileSync(source, "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
if (errors.length) process.exit(1);
const contract = output.contracts[`${NAME}.sol`][NAME];
process.stdout.write(
  JSON.stringify({ abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object, solc: solc.version() })
);
