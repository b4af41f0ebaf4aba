// A real atproto PLC directory and PDS on loopback, for the bluesky provider tests.
//
//   node scripts/peers/atproto-pds.mjs INSTALL_DIR [PLC_PORT PDS_PORT]
//
// INSTALL_DIR is where scripts/peers/atproto-pds.sh installed @atproto/dev-env. Ports
// default to 0 (any free port). Prints one JSON line, {"ready": true, "plc": URL, "pds":
// URL, "admin_password": ...}, once both answer, then runs until stdin closes or SIGTERM.
// The servers' data (SQLite files, blobs) go to os.tmpdir(): start this with TMPDIR set to
// a directory the caller deletes afterwards.
import net from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [installDir, plcPortArg = '0', pdsPortArg = '0'] = process.argv.slice(2)
if (!installDir) {
  console.error('usage: atproto-pds.mjs INSTALL_DIR [PLC_PORT PDS_PORT]')
  process.exit(2)
}

// PLC and PDS listen on every interface by default; nothing here may leave loopback.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (args.length > 0 && typeof args[0] === 'object' && args[0] !== null) {
    args[0] = { ...args[0], host: '127.0.0.1' }
  } else if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    const [port, ...rest] = args
    const tail = typeof rest[0] === 'string' ? rest.slice(1) : rest
    args = [port, '127.0.0.1', ...tail]
  }
  return listen.apply(this, args)
}

// get-port (used by dev-env for port 0) probes free ports; ask the OS for one ourselves.
const freePort = () =>
  new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })

const devEnv = await import(
  pathToFileURL(path.join(installDir, 'node_modules', '@atproto', 'dev-env', 'dist', 'index.js')).href
)

const plcPort = Number(plcPortArg) || (await freePort())
const pdsPort = Number(pdsPortArg) || (await freePort())
const network = await devEnv.TestNetworkNoAppView.create({
  plc: { port: plcPort },
  // As on bsky.social, createSession answers with the account's DID document.
  pds: { port: pdsPort, hostname: 'localhost', enableDidDocWithSession: true },
})
devEnv.mockMailer(network.pds)

let closing = false
const shutdown = async (code) => {
  if (closing) return
  closing = true
  try {
    await network.close()
  } catch (err) {
    console.error('atproto-pds: error while closing', err)
  }
  process.exit(code)
}
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
process.stdin.on('end', () => shutdown(0))
process.stdin.on('close', () => shutdown(0))
process.stdin.resume()

process.stdout.write(
  JSON.stringify({
    ready: true,
    plc: network.plc.url,
    pds: network.pds.url,
    admin_password: devEnv.ADMIN_PASSWORD ?? 'admin-pass',
  }) + '\n',
)
