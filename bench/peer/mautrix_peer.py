# SPDX-License-Identifier: MIT
"""The bench's Python peer: a mautrix-python application service doing, per event, the work the
daemon's appservice mode does, so that bench/run.sh can put the two side by side under the same
bench_appservice (docs/internals/MATRIX.md, Benchmark).

    mautrix_peer.py --registration FILE --listen PORT --homeserver URL --redis tcp://HOST:PORT

Per m.room.message from a user (mautrix parses the transaction and runs its handlers):
  1. de-duplicate: SET <prefix>{c:KEY}:ev:<event id> 1 NX PX <72 h> (nothing if it was there);
  2. load the session: GET <prefix>{c:KEY}:session (JSON, its version "v" first);
  3. a state step: a small state machine with the friche dialog's first two states and its
     commands (the same texts; « aide » gives the same two replies as the daemon: the help, then
     the question again), the answer normalised as the engine does (case, accents, spaces), the
     last three messages kept in the session, markdown bold rendered to HTML;
  4. save with a version check: EVALSHA of a compare-and-set script (redis-py register_script,
     which reloads it on NOSCRIPT), the session's expiry set with the write; on a conflict, back
     to 2 (at most 8 times, as the router);
  5. send the replies through the bot intent, in order, with the daemon's transaction ids:
     16 hex digits of FNV-1a 64 over (conversation key, NUL, event id), ".", the reply's index.
The bot's own join runs the same steps with the greeting (the join's event id as the event).

What it does less than the daemon (said in bench/run.sh's header too): no outbox (the replies are
sent from memory: a crash between the save and the sends loses them), no atomic commit (the dedupe
mark, the session and the replies are separate writes), the transaction ids kept in mautrix's
memory (the daemon marks them in Redis), the transaction acknowledged before its events are
handled (mautrix runs the handlers as background tasks; the daemon answers 200 once the events
are committed), no per-conversation queue (events of one room may run concurrently: the version
check catches it), no dialog engine (a hard-coded state machine), no statistics, reminders or
activity time.

Logging stays at WARNING; mautrix's state store is its in-memory one (no file written), updated
by the bot's join event so that the intent never calls /join.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import logging
import re
import signal
import sys
import unicodedata

import redis.asyncio as aioredis
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore
from mautrix.errors import MatrixConnectionError
from mautrix.types import EventType, Membership

DEDUPE_MS = 72 * 3600 * 1000  # router.dedupe_retention_hours
SESSION_MS = 180 * 24 * 3600 * 1000  # the session's expiry, as the daemon's
MAX_CONFLICTS = 8

# KEYS[1] the session; ARGV[1] the version read (0: none), ARGV[2] the new JSON (version first),
# ARGV[3] its expiry in ms. 1 written, 0 conflict.
CAS_LUA = """
local cur = redis.call('GET', KEYS[1])
local v = 0
if cur then v = tonumber(string.match(cur, '^{"v":(%d+)')) or -1 end
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

GREETING = (
    "Bonjour ! Je suis **frichebot**, l'assistant public qui aide les collectivités à reconvertir "
    "une **friche** : un terrain ou un bâtiment abandonné (ancienne usine, commerce vide, gare, "
    "station-service…).\n"
    "En une quinzaine de questions, je vous propose une **feuille de route** : les étapes, les "
    "services à contacter sur votre territoire et les aides qui peuvent s'appliquer.\n"
    "Je ne remplace ni un bureau d'études ni les services de l'État : mes informations sont "
    "générales et datées, et je vous dis quand il faut vérifier.\n"
    "Pour parler à une personne, écrivez « conseiller » à tout moment : je vous dirai quels "
    "services joindre. Vous pouvez aussi écrire « retour », « aide » ou « où en suis-je ».\n"
    "Je garde vos réponses et vos trois derniers messages pour vous suivre, 6 mois après votre "
    "dernier message ; « mes données » les montre et « oublier mes données » les efface."
)

# The states: question, help, and what an answer does (a check and the next state).
STATES = {
    "commune": {
        "question": "Dans quelle commune se trouve le site ?",
        "aide": "Écrivez le nom de la commune où se trouve le site (par exemple « Alès » ou "
        "« Saint-Denis »), son code postal (5 chiffres, par exemple « 30100 ») ou son code INSEE "
        "(5 caractères, par exemple « 30007 »). S'il y a plusieurs communes du même nom, je vous "
        "montre la liste.",
        "relances": [
            "Je n'ai pas trouvé cette commune. Essayez avec le code postal.",
            "Toujours pas… Essayez le code INSEE (5 caractères, par exemple 14118).",
        ],
        "valid": re.compile(r"^(\d{5}|2[ab]\d{3}|[a-z][a-z' -]{1,60})$"),
        "next": "demandeur",
    },
    "demandeur": {
        "question": "Pour qui faites-vous cette démarche ?",
        "aide": "Répondez « la commune », « l'intercommunalité » ou « autre ».",
        "relances": [
            "Je n'ai pas compris. Répondez « la commune », « l'intercommunalité » ou « autre »."
        ],
        "valid": re.compile(r"^(la commune|commune|mairie|epci|intercommunalite|autre)$"),
        "next": "demandeur",
    },
}
FIRST = "commune"
COMMANDS = {
    "aide": "aide", "help": "aide", "?": "aide",
    "retour": "retour", "revenir": "retour",
    "ou en suis-je": "ou", "ou en suis je": "ou",
}

BOLD = re.compile(r"\*\*(.+?)\*\*")


def normalise(text: str) -> str:
    """Lower case, accents off, spaces collapsed: what the engine matches answers on."""
    t = unicodedata.normalize("NFKD", text.strip().lower())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return " ".join(t.split())


def render(text: str) -> dict:
    """The reply's content, as the daemon's adapter sends it (m.notice, plain and HTML)."""
    paras = "".join(
        "<p>" + BOLD.sub(r"<strong>\1</strong>", html.escape(p, quote=False)) + "</p>"
        for p in text.split("\n")
        if p
    )
    return {
        "msgtype": "m.notice",
        "body": BOLD.sub(r"\1", text),
        "format": "org.matrix.custom.html",
        "formatted_body": paras,
        "m.mentions": {},
    }


def step(session: dict | None, text: str | None) -> tuple[dict, list[str]]:
    """One state step: (the new session, the texts to say). text None: the start."""
    if session is None or text is None:
        s = {"v": 0, "d": "friche", "s": FIRST, "a": {}, "l": [], "f": 0}
        if session is not None:
            s["v"] = session["v"]
        return s, [GREETING, STATES[FIRST]["question"]]
    s = dict(session)
    s["l"] = (s.get("l", []) + [text])[-3:]
    st = STATES.get(s.get("s"), STATES[FIRST])
    n = normalise(text)
    cmd = COMMANDS.get(n)
    if cmd == "aide":
        return s, [st["aide"], st["question"]]
    if cmd == "ou":
        done = ", ".join(sorted(s["a"])) or "aucune réponse"
        return s, ["Vous en êtes à : " + st["question"] + " (" + done + ")"]
    if cmd == "retour":
        return s, [st["question"]]
    if st["valid"].match(n):
        s["a"] = dict(s["a"], **{s["s"]: text.strip()})
        s["s"] = st["next"]
        s["f"] = 0
        return s, [STATES[s["s"]]["question"]]
    f = s.get("f", 0)
    s["f"] = f + 1
    relances = st["relances"]
    return s, [relances[min(f, len(relances) - 1)], st["question"]]


def fnv64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class MemoryASStateStore(ASStateStore, MemoryStateStore):
    """mautrix's in-memory state store for an appservice (no file)."""

    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


class Peer:
    def __init__(self, args: argparse.Namespace, as_token: str, hs_token: str) -> None:
        localpart, domain = args.user_id[1:].split(":", 1)
        self.prefix = args.prefix
        self.r = aioredis.from_url(args.redis.replace("tcp://", "redis://", 1))
        self.cas = self.r.register_script(CAS_LUA)
        self.az = AppService(
            server=args.homeserver,
            domain=domain,
            as_token=as_token,
            hs_token=hs_token,
            bot_localpart=localpart,
            id="frichebot-peer",
            state_store=MemoryASStateStore(),
            log=logging.getLogger("mau.appservice"),
        )
        self.az.matrix_event_handler(self.on_event)
        self.port = args.listen

    async def on_event(self, evt) -> None:
        bot = self.az.bot_mxid
        if evt.type == EventType.ROOM_MEMBER:
            if evt.state_key == bot and evt.content.membership == Membership.JOIN:
                await self.handle(evt.room_id, evt.event_id, None)
        elif evt.type == EventType.ROOM_MESSAGE and evt.sender != bot:
            body = getattr(evt.content, "body", None)
            if isinstance(body, str) and body:
                await self.handle(evt.room_id, evt.event_id, body)

    async def handle(self, room: str, event_id: str, text: str | None) -> None:
        conv = "matrix:" + room
        base = f"{self.prefix}{{c:{conv}}}:"
        if not await self.r.set(base + "ev:" + event_id, "1", nx=True, px=DEDUPE_MS):
            return  # a duplicate
        for _ in range(MAX_CONFLICTS):
            raw = await self.r.get(base + "session")
            session = json.loads(raw) if raw else None
            new, says = step(session, text)
            read_v = new["v"]
            new["v"] = read_v + 1
            data = json.dumps(new, ensure_ascii=False, separators=(",", ":"))
            if await self.cas(keys=[base + "session"], args=[read_v, data, SESSION_MS]):
                break
        else:
            logging.warning("%s: %d version conflicts, event dropped", conv, MAX_CONFLICTS)
            return
        h = fnv64(conv.encode() + b"\0" + event_id.encode())
        for i, t in enumerate(says):
            try:
                await self.az.intent.send_message_event(room, EventType.ROOM_MESSAGE, render(t),
                                                        txn_id=f"{h:016x}.{i}")
            except MatrixConnectionError as e:
                # The sink stops at the end of each bench run with replies in flight: one line,
                # not mautrix's traceback. No retry, as mautrix's default (retry count 0).
                logging.warning("%s: reply %016x.%d not sent: %s", conv, h, i, e)
                return

    async def run(self) -> None:
        await self.r.ping()
        await self.r.script_load(CAS_LUA)  # loaded at start, as the daemon's scripts
        await self.az.start(host="127.0.0.1", port=self.port)
        self.az.ready = True
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.az.stop()
        await self.r.aclose()


def registration_tokens(path: str) -> tuple[str, str]:
    """as_token and hs_token of `frichebot matrix-registration`'s YAML (no YAML library here)."""
    tokens = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'^(as_token|hs_token):\s*"?([^"\s]+)"?\s*$', line)
            if m:
                tokens[m.group(1)] = m.group(2)
    if len(tokens) != 2:
        sys.exit(f"mautrix_peer: {path}: no as_token or hs_token")
    return tokens["as_token"], tokens["hs_token"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registration", required=True)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--homeserver", required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--user-id", default="@frichebot:bench")
    p.add_argument("--prefix", default="peer:")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    as_token, hs_token = registration_tokens(args.registration)
    asyncio.run(amain(args, as_token, hs_token))


async def amain(args: argparse.Namespace, as_token: str, hs_token: str) -> None:
    # Built inside the running loop: AppService takes asyncio.get_event_loop() for its aiohttp
    # application and client session.
    await Peer(args, as_token, hs_token).run()


if __name__ == "__main__":
    main()
