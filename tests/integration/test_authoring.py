# SPDX-License-Identifier: MIT
"""The dialog authors' tools, run as an author would: check, graph, chat (through a pipe) and
test, with their exit statuses and what they print."""
import os
import subprocess

from conftest import BINARY

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
SAMPLE = os.path.join(SOURCE, "dialogs", "exemple.yaml")


def run(*args, stdin=None, cwd=None):
    return subprocess.run([BINARY, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_check_accepts_the_shipped_dialogs():
    r = run("check", os.path.join(SOURCE, "dialogs"))
    assert r.returncode == 0, r.stderr
    assert "exemple.yaml : correct" in r.stdout
    assert "0 en erreur" in r.stdout


def test_check_reports_every_error_with_position(tmp_path):
    bad = tmp_path / "casse.yaml"
    bad.write_text('dialogue: casse\ndebut: accueil\netats:\n  accueil:\n    dire: "Bonjour"\n    suite: nulle_part\n  orphelin:\n    question: "Jamais posée ?"\n    type: oui_non\n    suite: accueil\n    colour: bleu\n')
    r = run("check", str(bad))
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.startswith(str(bad) + ":")]
    assert any(":6:" in l and "nulle_part" in l for l in lines), r.stderr
    assert any(":11:" in l and "colour" in l for l in lines), r.stderr
    assert any("orphelin" in l for l in lines), r.stderr      # unreachable state
    assert len(lines) >= 3


def test_check_usage_errors():
    assert run("check").returncode == 2
    assert run("check", "--bogus").returncode == 2
    assert run("check", "/nonexistent/dir").returncode == 1


def test_graph_writes_dot():
    r = run("graph", SAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.lstrip().startswith("digraph")
    for state in ("accueil", "commune", "porteur", "usages", "prudence", "fin"):
        assert state in r.stdout
    assert "->" in r.stdout


def test_chat_through_a_pipe_shows_messages_and_effect_notes():
    script = "Lyon\n2\n800 m2\noui\ncompostage\nmars 2027\nJardin test\n/avance 6 semaines\n/quitter\n"
    r = run("chat", SAMPLE, stdin=script)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Bonjour" in out
    assert "Qui porte le projet ?" in out
    assert "Voici votre feuille de route" in out
    assert "[fin du parcours guidé]" in out
    assert "[relance" in out
    # the reminder fired after the virtual six weeks
    assert "Où en êtes-vous" in out.split("[fin du parcours guidé]")[1]


def test_test_reports_failing_turns_with_file_and_line(tmp_path):
    t = tmp_path / "faux.yaml"
    t.write_text(f'dialogue: {SAMPLE}\ntours:\n  - bot: {{contient: "Bonjour"}}\n  - dit: "Lyon"\n    bot: {{contient: "une phrase que le bot ne dit pas"}}\n')
    r = run("test", str(t))
    assert r.returncode == 1
    assert f"{t}:5: tour 2 (dit « Lyon ») : le bot devait dire « une phrase que le bot ne dit pas »" in r.stdout
    assert r.stdout.rstrip().endswith("0 passed, 1 failed")


def test_test_runs_the_shipped_transcripts():
    r = run("test", os.path.join(SOURCE, "tests", "transcripts"))
    assert r.returncode == 0, r.stdout
    last = r.stdout.rstrip().splitlines()[-1]
    passed = int(last.split()[0])
    assert last == f"{passed} passed, 0 failed" and passed >= 7


def test_graph_svg_through_dot(tmp_path):
    out = tmp_path / "exemple.svg"
    r = run("graph", SAMPLE, "--svg", "-o", str(out))
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    assert "<svg" in svg and "porteur" in svg


def test_graph_svg_of_the_friche_dialog(tmp_path):
    out = tmp_path / "friche.svg"
    r = run("graph", os.path.join(SOURCE, "dialogs", "friche.yaml"), "--svg", "-o", str(out))
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    # Every state of the dialog is a node of the drawing (the one linked from docs/ is made so).
    assert "<svg" in svg
    for state in ("accueil", "commune", "propriete", "pollution", "feuille", "avis_note"):
        assert f">{state}<" in svg, state


def test_test_refuses_an_alias_bomb_quickly(tmp_path):
    # Ten levels of YAML aliases, ten references each: 10^10 values if expanded.
    lines = ["dialogue: x", "a0: &a0 [1,2,3,4,5,6,7,8,9,10]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 10) + "]")
    lines.append("tours: *a9")
    t = tmp_path / "bombe.yaml"
    t.write_text("\n".join(lines) + "\n")
    r = run("test", str(t))
    assert r.returncode == 1
    assert "document too large" in r.stdout
