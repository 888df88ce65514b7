# SPDX-License-Identifier: MIT
"""No dead end in the default configuration (issue #19): the friche dialog over the web chat,
escalation off as in `make run`. Three commune answers the bot does not understand, then
« conseiller »: the user is never promised an advisor nor left without an answer, the
conversation carries on, and a reload still works."""
from test_webchat import Chat


def bot_texts(chat):
    return [e["text"] for e in chat.bot()]


def test_three_bad_communes_then_conseiller_never_leave_the_user_alone(redis, make_daemon):
    d = make_daemon(redis.address, idle_timeout_s=60)  # the default dialog: friche
    chat = Chat(d)
    asked = chat.wait_bot("Dans quelle commune")
    after = asked["seq"]
    for text, reply in [("Bonjour", "Je n'ai pas trouvé cette commune"),
                        ("Je suis le maire", "Toujours pas"),
                        ("c est pour une ancienne mine", "Je n'arrive pas à comprendre")]:
        chat.say(text)
        after = chat.wait_bot(reply, after)["seq"]
    # help with the question, then the question again
    after = chat.wait_bot("Dans quelle commune", after)["seq"]

    chat.say("conseiller")
    no_one = chat.wait_bot("Aucun conseiller ne peut vous répondre", after)
    assert "lannuaire.service-public.fr" in no_one["text"]
    after = chat.wait_bot("Dans quelle commune", no_one["seq"])["seq"]
    assert not any("Je transmets" in t for t in bot_texts(chat)), bot_texts(chat)
    # no ticket was opened for nobody
    assert redis.cli("EXISTS", f"fb:{{c:web:{chat.token}}}:ticket").strip() == "0"

    # the conversation carries on
    chat.say("Alès")
    after = chat.wait_bot("Pour qui faites-vous cette démarche", after)["seq"]
    chat.say("conseiller")
    local = chat.wait_bot("Aucun conseiller ne peut vous répondre", after)
    assert "DDTM" in local["text"] and "Gard" in local["text"], local["text"]
    after = chat.wait_bot("Pour qui faites-vous cette démarche", local["seq"])["seq"]

    # a reload replays the history and the bot still answers
    seen = dict(chat.entries)
    chat.close()
    again = Chat(d, token=chat.token, since=0)
    while len(again.entries) < len(seen):
        again.recv()
    for seq, entry in seen.items():
        assert again.entries[seq] == entry
    again.say("la commune")
    again.wait_bot("Quel était l'usage du site", after)
    again.say("mes données")
    data = again.wait_bot("Voici tout ce que je conserve", after)
    assert "Alès" in data["text"] and "Signaux retenus" not in data["text"]
    again.close()
