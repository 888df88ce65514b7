# SPDX-License-Identifier: MIT
"""The knowledge base through the web chat (issue #20, docs/internals/KB.md): the daemon serves a
dialog with `connaissances:` (the test base, tests/data/dialogs/kb.yaml); a question typed at
the commune step is answered with its source and the pending question, feedback is counted, an
unknown question gets the honest answer, the place is kept, and /stats.json counts it all
without keeping any question text in Redis."""
import os

from conftest import wait_until
from test_webchat import Chat

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
KB_DIALOG = os.path.join(SOURCE, "tests", "data", "dialogs", "kb.yaml")


def test_questions_in_the_web_chat(redis, make_daemon):
    extra = (f"dialogs:\n  path: \"{KB_DIALOG}\"\n"
             "stats:\n  min_count: 1\n  cache_seconds: 0\n")
    d = make_daemon(redis.address, idle_timeout_s=60, extra=extra)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    after = chat.last_seq()
    chat.say("Comment obtenir le fonds vert pour une friche ?")
    answer = chat.wait_bot("Le Fonds vert finance", after)
    assert "En savoir plus : Ministère de la Transition écologique" in answer["text"]
    assert 'href="https://www.ecologie.gouv.fr/politiques-publiques/fonds-vert"' in answer["html"]
    assert "Cette réponse vous aide-t-elle ?" in answer["text"]
    chat.wait_bot("Dans quelle commune se trouve le site ?", answer["seq"])
    after = chat.last_seq()
    chat.say("utile")
    chat.wait_bot("Merci pour votre retour", after)
    after = chat.last_seq()
    chat.say("Grenoble")
    usage = chat.wait_bot("Quel était l'usage du site ?", after)
    after = chat.last_seq()
    chat.say("quelle est la recette de la tarte aux pommes ?")
    chat.wait_bot("Je n'ai pas de réponse sûre à cette question.", after)
    repeat = chat.wait_bot("Quel était l'usage du site ?", usage["seq"])
    assert "1. Industriel" not in repeat["text"]
    assert {"id": "industriel", "label": "Industriel"} in repeat["choices"]
    after = chat.last_seq()
    chat.say("1")
    chat.wait_bot("Un mot sur le projet ?", after)

    def figures():
        status, doc = d.json("/stats.json")
        return doc["questions"] if status == 200 else None
    want = {"answered": 1, "unanswered": 1, "helpful": 1, "not_helpful": 0}
    assert wait_until(lambda: figures() == want), figures()
    status, _, metrics = d.request("/metrics")
    assert b"frichebot_stats_questions_answered_total 1" in metrics
    # No question text in the session nor any counter: the strings and hashes of Redis (the web
    # chat's history, a list, shows the user their own messages and expires with the chat).
    for key in redis.cli("--scan").split():
        kind = redis.cli("TYPE", key)
        if kind == "string":
            assert "tarte aux pommes" not in redis.cli("GET", key), key
        elif kind == "hash":
            assert "tarte aux pommes" not in redis.cli("HGETALL", key), key
    chat.close()
