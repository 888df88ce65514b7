# SPDX-License-Identifier: MIT
"""The roadmap page (issue #16), against the real daemon and Redis: a friche conversation in the
web chat ends with a short summary and the page's link (server.public_url); the page is served
at GET /feuille-de-route/<token> with every step, the contacts, the funding and the sources;
« ma feuille de route » gives the link again; « oublier mes données » revokes it (404 after);
a token that is not one, or an unknown one, is a 404."""
import re
import urllib.parse

from conftest import wait_until
from test_webchat import Chat, conv_keys

# A friche conversation to its roadmap (tests/transcripts/friche-lien-feuille-de-route.yaml).
ANSWERS = ["Montbard", "la commune", "industriel", "5000", "oui, dégradés", "10 ans",
           "un propriétaire privé joignable", "soupçonnée", "PLU", "aucune", "activité", "idée",
           "aucun"]
LINK = re.compile(r"https?://[^\s)]+/feuille-de-route/([0-9a-f]+)")


def start(make_daemon, redis, public=True):
    d = make_daemon(redis.address, start=False, idle_timeout_s=60)
    if public:
        d.settings["server_extra"] = f'  public_url: "http://127.0.0.1:{d.port}"'
    d.settings["extra"] = "web:\n  messages_per_minute: 120\n"
    return d.start()


def to_the_roadmap(chat):
    """Answers every question; returns the bot entry that holds the roadmap's summary."""
    last = chat.wait_bot("Dans quelle commune")["seq"]
    for answer in ANSWERS:
        chat.say(answer)
        last = chat.wait_for(lambda f: f.get("type") == "msg" and f["from"] == "bot"
                             and f["seq"] > last, what=f"the reply to {answer!r}")["seq"]
    return chat.wait_bot("Pour commencer")


def test_summary_link_page_and_forget(redis, make_daemon):
    d = start(make_daemon, redis)
    chat = Chat(d)
    summary = to_the_roadmap(chat)
    text = summary["text"]
    # The summary: the site, three steps, three contacts, the funding names, the link.
    assert "Votre feuille de route – Montbard (Côte-d'Or), un site de 5 000 m²" in text
    assert "Étape 3 – " in text and "Étape 4 – " not in text
    assert "À contacter d'abord" in text and "Financements possibles" in text
    assert "Pourquoi :" not in text and "Source :" not in text
    assert len(text) < 2500, len(text)
    m = LINK.search(text)
    assert m, text
    token = m.group(1)
    assert len(token) == 48  # 192 random bits
    url = urllib.parse.urlsplit(m.group(0))
    assert f'<a href="{m.group(0)}">la feuille de route complète</a>' in summary["html"]
    # Stored with the conversation (the token and its hash) and in the lookup by hash only.
    assert any(k.endswith("}:roadmap") for k in conv_keys(redis, chat.token))
    assert redis.cli("--scan", "--pattern", f"fb:{{g}}:roadmap:{token}").strip() == ""

    status, headers, body = d.request(url.path)
    page = body.decode()
    assert status == 200, page
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    assert '<html lang="fr">' in page and 'role="main"' in page and 'role="banner"' in page
    assert '<link rel="stylesheet" href="/static/feuille-de-route.css">' in page
    assert "<h1>Votre feuille de route – Montbard (Côte-d&#39;Or)</h1>" in page
    assert "<h2>Vos interlocuteurs</h2>" in page
    assert "<h2>Les financements qui peuvent s&#39;appliquer</h2>" in page
    assert "<h3>Étape 4 – " in page
    for needle in ("Statut : <strong>à faire</strong>", "Pourquoi : ", "Première action : ",
                   "Validité : ", "(vérifiée le 2026-", "Direction départementale des territoires",
                   '<a href="https://github.com/betagouv/urbanvitaliz/blob/',
                   # sources are named (friche-sources.yaml), not shown as raw addresses
                   " – UrbanVitaliz (Cerema, beta.gouv.fr)</a>",
                   "\">L&#39;annuaire de l&#39;administration – Service-Public.fr</a>"):
        assert needle in page, needle
    assert ">https://github.com/" not in page and ">https://lannuaire." not in page
    assert "<script" not in page

    # « étape 2 faite » shows on the page; « ma feuille de route » gives the same link again.
    chat.say("je ne donne pas d'avis")
    chat.wait_bot("Votre feuille de route est enregistrée")
    chat.say("étape 2 faite")
    chat.wait_bot("est maintenant « faite »")
    page = d.request(url.path)[2].decode()
    assert "Statut : <strong>faite</strong> (noté le " in page
    after = chat.last_seq()
    chat.say("ma feuille de route")
    again = chat.wait_bot("Voici où nous en sommes", after)
    assert LINK.search(again["text"]).group(1) == token

    # Not a token, an unknown token: 404, the same page either way.
    assert d.request("/feuille-de-route/")[0] == 404
    for path in ("/feuille-de-route/abc", "/feuille-de-route/" + "0" * 48,
                 "/feuille-de-route/" + token.upper(), "/feuille-de-route/" + token + "/x"):
        status, _, body = d.request(path)
        assert status == 404, path
        assert "Feuille de route introuvable" in body.decode()

    # « oublier mes données »: the page is gone, and its lookup key too.
    after = chat.last_seq()
    chat.say("oublier mes données")
    chat.wait_for(lambda f: f["type"] == "msg" and f["from"] == "bot" and f["seq"] > after,
                  what="the goodbye")
    assert wait_until(lambda: d.request(url.path)[0] == 404, 10)
    assert redis.cli("--scan", "--pattern", "fb:{g}:roadmap:*").strip() == ""
    chat.close()


def test_without_public_url_the_chat_says_how_to_get_the_roadmap(redis, make_daemon):
    d = start(make_daemon, redis, public=False)
    chat = Chat(d)
    summary = to_the_roadmap(chat)
    assert "/feuille-de-route/" not in summary["text"]
    assert "Écrivez « mes étapes » pour toutes les étapes" in summary["text"]
    # No link given: nothing stored for a page.
    assert not any(k.endswith("}:roadmap") for k in conv_keys(redis, chat.token))
    chat.close()
