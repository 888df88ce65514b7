// SPDX-License-Identifier: MIT
//
// A Matrix user on Element Web's stack, for the E2EE tests: matrix-js-sdk with its Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm, initRustCrypto with an in-memory store), driven over JSON
// lines. One request per line on stdin, {"id": ..., "op": ..., ...}; one response per request on
// stdout, {"id": ..., "ok": true, ...} or {"id": ..., "ok": false, "error": "..."}. Requests are
// handled one at a time, in order. Everything else the SDK prints goes to stderr.
// One process is one device: a second device of the same user is a second process logging in.
// The ops and their fields are listed in docs/internals/MATRIX-TESTS.md; tests/integration/e2ee/
// jsclient.py is the Python side.
import readline from "node:readline";

// The SDK logs through loglevel/console: keep stdout for the protocol. The Rust crypto logs
// straight to console.debug/trace: dropped unless FB_JS_LOGLEVEL is debug or trace.
const LEVEL = process.env.FB_JS_LOGLEVEL || "warn";
const verbose = LEVEL === "debug" || LEVEL === "trace";
for (const m of ["log", "info", "warn", "error", "debug", "trace"]) {
  const quiet = !verbose && (m === "debug" || m === "trace" || (m === "log" && LEVEL !== "info"));
  console[m] = quiet ? () => {} : (...args) => process.stderr.write(`[js ${m}] ` + args.map(String).join(" ") + "\n");
}

const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
logger.setLevel(LEVEL);

const { decodeRecoveryKey } = await import("matrix-js-sdk/lib/crypto-api/recovery-key.js");

let client = null;
let password = null;
let secretStorageKey = null; // the 4S private key this device knows (made here or from a recovery key)
const seen = []; // MatrixEvents of room timelines, in arrival order
const seenIds = new Set();
const consumed = new Set(); // event ids already returned by `messages`
const sentIds = new Set(); // event ids this device sent

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function need() {
  if (!client) throw new Error("not logged in");
  return client;
}

async function waitFor(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout (${timeoutMs} ms) waiting for ${what}`);
    await sleep(100);
  }
}

function threadRoot(ev) {
  const rel = ev.getContent()["m.relates_to"] || ev.getWireContent()["m.relates_to"];
  return rel && rel.rel_type === "m.thread" ? rel.event_id : null;
}

// What this device's push rules say of a readable event, evaluated here on the clear content as
// Element does once it decrypted an event (the server only sees m.room.encrypted, which its
// default rules notify whatever it holds): {notify, highlight}, or nulls for an undecryptable one.
function pushOf(ev) {
  if (ev.isDecryptionFailure()) return { notify: null, highlight: null };
  const actions = client.getPushActionsForEvent(ev, true);
  return { notify: !!actions?.notify, highlight: !!actions?.tweaks?.highlight };
}

function record(ev) {
  const content = ev.getContent();
  return {
    ...pushOf(ev),
    room_id: ev.getRoomId(),
    event_id: ev.getId(),
    sender: ev.getSender(),
    type: ev.getType(),
    msgtype: content.msgtype ?? null,
    body: content.body ?? null,
    content,
    encrypted: ev.isEncrypted(), // m.room.encrypted on the wire
    decryption_failure: ev.isDecryptionFailure() ? (ev.decryptionFailureReason ?? "UNKNOWN") : null,
    thread_root: threadRoot(ev),
    ts: ev.getTs(),
  };
}

function matches(ev, req) {
  if (req.room && ev.getRoomId() !== req.room) return false;
  if (req.sender && ev.getSender() !== req.sender) return false;
  if (!req.include_own && sentIds.has(ev.getId())) return false;
  if (ev.status !== null && ev.status !== undefined) return false; // a local echo
  return true;
}

async function login(req) {
  const tmp = sdk.createClient({ baseUrl: req.homeserver });
  const user = req.user.startsWith("@") ? req.user.slice(1).split(":")[0] : req.user;
  const res = await tmp.login("m.login.password", {
    identifier: { type: "m.id.user", user },
    password: req.password,
    initial_device_display_name: req.device_name || "frichebot test (matrix-js-sdk)",
    ...(req.device_id ? { device_id: req.device_id } : {}),
  });
  password = req.password;
  client = sdk.createClient({
    baseUrl: req.homeserver,
    userId: res.user_id,
    accessToken: res.access_token,
    deviceId: res.device_id,
    cryptoCallbacks: {
      getSecretStorageKey: async ({ keys }) => (secretStorageKey ? [Object.keys(keys)[0], secretStorageKey] : null),
      cacheSecretStorageKey: (keyId, keyInfo, key) => {
        secretStorageKey = key;
      },
    },
  });
  await client.initRustCrypto({ useIndexedDB: false });
  client.on(sdk.RoomEvent.Timeline, (ev, room, toStart) => {
    if (toStart || seenIds.has(ev.getId()) || !ev.getId() || ev.getId().startsWith("~")) return;
    seenIds.add(ev.getId());
    seen.push(ev);
  });
  // Invites are not joined by themselves: the test says when (op join).
  const prepared = new Promise((resolve) => {
    const onSync = (state) => {
      if (state === "PREPARED" || state === "SYNCING") {
        client.off(sdk.ClientEvent.Sync, onSync);
        resolve();
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
  });
  // threadSupport off: thread events stay in the room's main timeline, with their m.relates_to.
  await client.startClient({ initialSyncLimit: 20, threadSupport: false, lazyLoadMembers: false });
  await prepared;
  return { user_id: res.user_id, device_id: res.device_id, access_token: res.access_token,
           crypto: client.getCrypto().getVersion() };
}

async function bootstrapCrossSigning(req) {
  const c = need();
  const crypto = c.getCrypto();
  await crypto.bootstrapCrossSigning({
    setupNewCrossSigning: !!req.reset,
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: c.getUserId() },
        password: req.password || password,
      });
    },
  });
  const status = await ownDeviceSigned(15000);
  return { ready: await crypto.isCrossSigningReady(), signed_by_owner: !!status?.signedByOwner };
}

async function ownDeviceSigned(timeoutMs) {
  // The device's own signature shows once the keys are re-read; a few seconds at most.
  const c = need();
  try {
    return await waitFor(async () => {
      const s = await c.getCrypto().getDeviceVerificationStatus(c.getUserId(), c.getDeviceId());
      return s?.signedByOwner ? s : null;
    }, timeoutMs, "this device cross-signed");
  } catch {
    return null;
  }
}

async function bootstrapSecretStorage() {
  // Secret storage (4S) with a new recovery key, holding the cross-signing private keys: what
  // Element's "set up recovery" does. The recovery key lets another device of the user sign itself.
  const crypto = need().getCrypto();
  const key = await crypto.createRecoveryKeyFromPassphrase();
  await crypto.bootstrapSecretStorage({ createSecretStorageKey: async () => key, setupNewSecretStorage: true });
  secretStorageKey = key.privateKey;
  return { recovery_key: key.encodedPrivateKey, ready: await crypto.isSecretStorageReady() };
}

async function verifyWithRecoveryKey(req) {
  // Element's "verify with recovery key" on a new device: the cross-signing keys are read from
  // 4S and this device signs itself with them (the own identity is then trusted here too).
  const c = need();
  const crypto = c.getCrypto();
  secretStorageKey = decodeRecoveryKey(req.recovery_key);
  // The own public identity must have come through /keys/query first, or the import fails.
  await waitFor(async () => {
    await crypto.getUserDeviceInfo([c.getUserId()], true);
    return (await crypto.getCrossSigningStatus()).publicKeysOnDevice;
  }, req.timeout_ms ?? 15000, "the own cross-signing identity from /keys/query");
  await crypto.bootstrapCrossSigning({});
  const status = await ownDeviceSigned(req.timeout_ms ?? 15000);
  return { ready: await crypto.isCrossSigningReady(), signed_by_owner: !!status?.signedByOwner };
}

async function deviceStatus(req) {
  const c = need();
  const crypto = c.getCrypto();
  const user = req.user || c.getUserId();
  const get = async () => {
    await crypto.getUserDeviceInfo([user], true);
    return crypto.getDeviceVerificationStatus(user, req.device_id);
  };
  let status = await get();
  if (req.wait_signed) {
    status = await waitFor(async () => {
      const s = await get();
      return s && s.signedByOwner ? s : null;
    }, req.timeout_ms ?? 30000, `${user} ${req.device_id} cross-signed by its owner`);
  }
  return {
    known: !!status,
    signed_by_owner: !!status?.signedByOwner,
    cross_signing_verified: !!status?.crossSigningVerified,
    locally_verified: !!status?.localVerified,
  };
}

async function crossSignDevice(req) {
  const c = need();
  const crypto = c.getCrypto();
  await waitFor(async () => {
    const devices = await crypto.getUserDeviceInfo([c.getUserId()], true);
    return devices.get(c.getUserId())?.has(req.device_id);
  }, req.timeout_ms ?? 30000, `own device ${req.device_id} in /keys/query`);
  await crypto.crossSignDevice(req.device_id);
  return deviceStatus({ device_id: req.device_id, wait_signed: true, timeout_ms: req.timeout_ms ?? 30000 });
}

function isolation(req) {
  const crypto = need().getCrypto();
  if (req.mode === "only_signed") crypto.setDeviceIsolationMode(new cryptoApi.OnlySignedDevicesIsolationMode());
  else if (req.mode === "all") crypto.setDeviceIsolationMode(new cryptoApi.AllDevicesIsolationMode(false));
  else throw new Error(`unknown isolation mode ${req.mode}`);
  return { mode: req.mode };
}

async function roomJoined(roomId, timeoutMs) {
  const c = need();
  await waitFor(() => c.getRoom(roomId)?.getMyMembership() === "join", timeoutMs, `joined ${roomId} in /sync`);
}

async function createDm(req) {
  const c = need();
  const invite = Array.isArray(req.invite) ? req.invite : [req.invite];
  const initialState = req.encrypted === false ? [] : [
    { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }];
  const { room_id } = await c.createRoom({
    is_direct: true, invite, preset: "trusted_private_chat", initial_state: initialState,
    ...(req.name ? { name: req.name } : {}),
  });
  // Element records the direct room in m.direct, as Tchap does.
  const direct = { ...(c.getAccountData("m.direct")?.getContent() || {}) };
  for (const u of invite) direct[u] = [...(direct[u] || []), room_id];
  await c.setAccountData("m.direct", direct);
  await roomJoined(room_id, req.timeout_ms ?? 30000);
  return { room_id };
}

async function join(req) {
  const c = need();
  await waitFor(() => c.getRoom(req.room)?.getMyMembership() === "invite", req.timeout_ms ?? 30000,
                `the invite to ${req.room}`);
  await c.joinRoom(req.room);
  await roomJoined(req.room, req.timeout_ms ?? 30000);
  return { room_id: req.room };
}

async function waitMembers(req) {
  // Until every listed user is joined in the sender's view: keys go to joined members only.
  const c = need();
  await waitFor(() => {
    const room = c.getRoom(req.room);
    return room && req.users.every((u) => room.getMember(u)?.membership === "join");
  }, req.timeout_ms ?? 30000, `${req.users} joined ${req.room}`);
  return {};
}

async function send(req) {
  const c = need();
  const content = { msgtype: req.msgtype || "m.text", body: req.text };
  if (req.html) {
    content.format = "org.matrix.custom.html";
    content.formatted_body = req.html;
  }
  if (req.thread_root) {
    content["m.relates_to"] = { rel_type: "m.thread", event_id: req.thread_root, is_falling_back: true,
                                "m.in_reply_to": { event_id: req.reply_to || req.thread_root } };
  }
  if (req.mentions) content["m.mentions"] = req.mentions;
  const { event_id } = await c.sendEvent(req.room, null, "m.room.message", content);
  sentIds.add(event_id);
  return { event_id };
}

async function messages(req) {
  // Waits until `count` not-yet-returned m.room.message events that match (room, sender, and
  // body_contains if given) are readable; returns them, and the matching events that could not be
  // decrypted (by then), which are not consumed. With until_failure (a list of DecryptionFailureCode
  // names), it returns as soon as one matching event has failed with one of them.
  need();
  const count = req.count ?? 1;
  const timeoutMs = req.timeout_ms ?? 30000;
  const end = Date.now() + timeoutMs;
  let got, failed;
  for (;;) {
    got = [];
    failed = [];
    for (const ev of seen) {
      if (consumed.has(ev.getId()) || !matches(ev, req)) continue;
      if (ev.isBeingDecrypted() || ev.shouldAttemptDecryption()) continue;
      if (ev.isDecryptionFailure()) {
        failed.push(record(ev));
        continue;
      }
      if (ev.getType() !== "m.room.message") continue;
      if (req.body_contains && !(ev.getContent().body || "").includes(req.body_contains)) continue;
      got.push(ev);
      if (got.length >= count) break;
    }
    if (got.length >= count || Date.now() > end) break;
    if (req.until_failure && failed.some((f) => req.until_failure.includes(f.decryption_failure))) break;
    await sleep(100);
  }
  for (const ev of got) consumed.add(ev.getId());
  return { complete: got.length >= count, messages: got.map(record), undecryptable: failed };
}

async function notifications(req) {
  const c = need();
  const params = {};
  if (req.limit) params.limit = String(req.limit);
  if (req.only) params.only = req.only;
  const out = await c.http.authedRequest(sdk.Method.Get, "/notifications", params);
  const byId = new Map(seen.map((ev) => [ev.getId(), ev]));
  return {
    notifications: out.notifications.map((n) => {
      const ev = byId.get(n.event.event_id);
      return {
        room_id: n.room_id, event_id: n.event.event_id, sender: n.event.sender, type: n.event.type,
        read: n.read, actions: n.actions, ts: n.ts,
        // The clear content where this device decrypted it.
        body: ev && !ev.isDecryptionFailure() ? (ev.getContent().body ?? null) : null,
        msgtype: ev && !ev.isDecryptionFailure() ? (ev.getContent().msgtype ?? null) : null,
      };
    }),
  };
}

async function stop() {
  if (client) {
    client.stopClient();
    client.getCrypto()?.stop?.();
  }
  return {};
}

const OPS = {
  login, bootstrap_cross_signing: bootstrapCrossSigning, device_status: deviceStatus,
  cross_sign_device: crossSignDevice, bootstrap_secret_storage: bootstrapSecretStorage,
  verify_with_recovery_key: verifyWithRecoveryKey, isolation, create_dm: createDm, join, wait_members: waitMembers,
  send, messages, notifications, stop,
  whoami: () => ({ user_id: need().getUserId(), device_id: need().getDeviceId() }),
};

const rl = readline.createInterface({ input: process.stdin, terminal: false });
let stopping = false;
for await (const line of rl) {
  if (!line.trim()) continue;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: null, ok: false, error: `bad JSON: ${e.message}` }) + "\n");
    continue;
  }
  let out;
  try {
    const fn = OPS[req.op];
    if (!fn) throw new Error(`unknown op ${req.op}`);
    out = { id: req.id, ok: true, ...(await fn(req)) };
  } catch (e) {
    process.stderr.write(`[driver] op ${req.op} failed: ${e.stack || e}\n`);
    out = { id: req.id, ok: false, error: String(e.message || e), errcode: e.errcode ?? null };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  if (req.op === "stop") {
    stopping = true;
    break;
  }
}
if (!stopping) await stop();
process.exit(0);
