// An EV charger on node-opcua, another OPC UA stack than the asyncua the drivers and hil_sim use.
//
//   node charger.js CONFIG.json
//
// CONFIG (written by tests/conformance/opcua_charger.py from labspec.ev_charger's node table):
//   port, namespaceUri, object, variables: [{name, nodeId, dataType, writable, value}],
//   maxNodesPerRead, maxNodesPerWrite (0 = no limit; node-opcua answers BadTooManyOperations
//   beyond them and publishes them under ServerCapabilities.OperationLimits),
//   plcWrites (true: a Write whose DataValue carries a status code or timestamps is refused with
//   BadWriteNotSupported, as PLC-based servers do),
//   security ("none", "sign_and_encrypt" or "both": an anonymous endpoint without security and
//   a Basic256Sha256 SignAndEncrypt one for users), certificateFile, privateKeyFile (PEM),
//   pkiDir (the server's trust list of client certificates: pkiDir/trusted/certs; unknown ones
//   are refused), users ({name: password}).
// A writable Boolean <object>.Test.RefuseSetpoint makes the charger refuse PowerSetpointKw writes
// (BadOutOfRange) while Enabled is still accepted: a Write that fails part-way.
// Prints "READY <endpoint url>" once it listens.
"use strict";

const fs = require("node:fs");
const {
    OPCUAServer,
    OPCUACertificateManager,
    DataType,
    DataValue,
    Variant,
    StatusCodes,
    SecurityPolicy,
    MessageSecurityMode,
    nodesets,
} = require("node-opcua");
// node-opcua keeps no trace of which DataValue fields a Write carried (an absent status code
// decodes as Good); remember the encoding mask of each DataValue as it is decoded.
const dataValueCodec = require("node-opcua-data-value/dist/datavalue.js");

const VALUE_ONLY = 0x01;
const decodeDataValue = dataValueCodec.decodeDataValue;
dataValueCodec.decodeDataValue = function (stream, dataValue) {
    const mask = stream.buffer[stream.length];
    const decoded = decodeDataValue(stream, dataValue);
    decoded.$encodingMask = mask;
    return decoded;
};

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const NULL_DATE = new Date(Date.UTC(1601, 0, 1));

function initial(variable) {
    if (variable.dataType === "DateTime") {
        return variable.value ? new Date(variable.value) : NULL_DATE;
    }
    return variable.value;
}

async function main() {
    const secure = config.security !== "none";
    const plain = config.security !== "sign_and_encrypt";
    const policies = [];
    const modes = [];
    if (plain) {
        policies.push(SecurityPolicy.None);
        modes.push(MessageSecurityMode.None);
    }
    if (secure) {
        policies.push(SecurityPolicy.Basic256Sha256);
        modes.push(MessageSecurityMode.SignAndEncrypt);
    }
    let serverCertificateManager;
    if (secure) {
        serverCertificateManager = new OPCUACertificateManager({
            rootFolder: config.pkiDir,
            automaticallyAcceptUnknownCertificate: false,
        });
        await serverCertificateManager.initialize();
    }
    const server = new OPCUAServer({
        port: config.port,
        hostname: "127.0.0.1",
        resourcePath: "/charger",
        nodeset_filename: [nodesets.standard],
        serverInfo: {
            applicationUri: config.applicationUri,
            productUri: "urn:p2p-testbed:conformance:node-opcua-charger",
            applicationName: { text: "EV charger (node-opcua)" },
        },
        serverCapabilities: {
            operationLimits: {
                maxNodesPerRead: config.maxNodesPerRead || 0,
                maxNodesPerWrite: config.maxNodesPerWrite || 0,
            },
        },
        securityPolicies: policies,
        securityModes: modes,
        allowAnonymous: plain,
        certificateFile: config.certificateFile,
        privateKeyFile: config.privateKeyFile,
        serverCertificateManager,
        userManager: {
            isValidUser: (user, password) => (config.users || {})[user] === password,
        },
    });
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const namespace = addressSpace.registerNamespace(config.namespaceUri);
    const charger = namespace.addObject({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: config.object,
        nodeId: `s=${config.object}`,
    });
    const values = {};
    const types = {};
    for (const variable of config.variables) {
        values[variable.name] = initial(variable);
        types[variable.name] = variable.dataType;
    }
    const state = { refuseSetpoint: false };

    function current(name) {
        if (name === "PowerKw") {
            const on = values.Enabled && values.Plugged;
            return on ? values.PowerSetpointKw : 0;
        }
        return values[name];
    }

    function write(name, dataValue) {
        if (config.plcWrites && dataValue.$encodingMask !== VALUE_ONLY) {
            return StatusCodes.BadWriteNotSupported;
        }
        if (name === "PowerSetpointKw" && state.refuseSetpoint) {
            return StatusCodes.BadOutOfRange;
        }
        values[name] = dataValue.value.value;
        return StatusCodes.Good;
    }

    for (const variable of config.variables) {
        const name = variable.name;
        const dataType = DataType[variable.dataType];
        const read = () => new Variant({ dataType, value: current(name) });
        const binding = variable.writable
            ? {
                  timestamped_get: () =>
                      new DataValue({ value: read(), statusCode: StatusCodes.Good }),
                  timestamped_set: (dataValue, callback) => callback(null, write(name, dataValue)),
              }
            : { get: read };
        namespace.addVariable({
            componentOf: charger,
            browseName: name,
            nodeId: `s=${variable.nodeId}`,
            dataType: variable.dataType,
            minimumSamplingInterval: 50,
            accessLevel: variable.writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
            userAccessLevel: variable.writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
            value: binding,
        });
    }
    namespace.addVariable({
        componentOf: charger,
        browseName: "Test.RefuseSetpoint",
        nodeId: `s=${config.object}.Test.RefuseSetpoint`,
        dataType: "Boolean",
        minimumSamplingInterval: 50,
        accessLevel: "CurrentRead | CurrentWrite",
        userAccessLevel: "CurrentRead | CurrentWrite",
        value: {
            get: () => new Variant({ dataType: DataType.Boolean, value: state.refuseSetpoint }),
            set: (variant) => {
                state.refuseSetpoint = Boolean(variant.value);
                return StatusCodes.Good;
            },
        },
    });

    await server.start();
    process.stdout.write(`READY ${server.getEndpointUrl()}\n`);

    const stop = async () => {
        await server.shutdown(0);
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((error) => {
    process.stderr.write(`charger failed: ${error.stack || error}\n`);
    process.exit(1);
});
