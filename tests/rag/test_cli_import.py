"""`penwright lore ...` end to end on the example project, and importing notes and JSON lorebooks."""

from __future__ import annotations

import json
import shutil

from penwright.cli import main
from penwright.rag.entries import parse_file

LOREBOOK = {  # SillyTavern World Info export shape
    "entries": {
        "0": {
            "uid": 0,
            "key": ["Ines", "Ines Marr"],
            "keysecondary": [],
            "comment": "Ines Marr",
            "content": "A smuggler who runs brandy past the revenue men.",
            "constant": False,
            "disable": False,
            "order": 100,
        },
        "1": {
            "uid": 1,
            "key": ["/revenue (men|cutter)/gi"],
            "keysecondary": ["night"],
            "comment": "",
            "content": "The revenue cutter patrols the coast at night.",
            "constant": True,
            "disable": False,
        },
        "2": {"uid": 2, "key": ["old"], "comment": "Disabled", "content": "x", "disable": True},
        "3": {"uid": 3, "key": ["empty"], "comment": "Empty", "content": "  "},
    }
}


def tree_digest(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_index_search_check_select(example_project, example_built, capsys):
    shutil.copytree(example_built / "index", example_project / ".penwright" / "lore")  # skip embedding everything again
    lore_before = tree_digest(example_project / "lore")
    p = ["--project", str(example_project)]
    assert main(["lore", "index", *p]) == 0
    out = capsys.readouterr().out
    assert "16 entries, 20 sections" in out and "0 sections embedded" in out
    assert main(["lore", "search", "a reef of black rocks", "-k", "2", "--json", *p]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in hits][0] == "The Widow's Teeth" and len(hits) == 2
    assert main(["lore", "check", *p]) == 0 and "No problems found." in capsys.readouterr().out
    assert main(["lore", "select", "--chapter", "3", "--json", "Mr. Crane's crate was in the ledger.", *p]) == 0
    sel = json.loads(capsys.readouterr().out)
    assert {"style.md::lead", "mr-crane.md::lead", "tobias-ledgers.md::lead"} <= {e["id"] for e in sel["entries"]}
    # a broken file and a duplicate make `check` fail with the file named
    (example_project / "lore" / "twin.md").write_text("---\nname: Lisk\n---\nAnother Lisk.\n")
    assert main(["lore", "check", *p]) == 1
    assert "twin.md: name 'Lisk' is also claimed by lisk.md" in capsys.readouterr().out
    (example_project / "lore" / "twin.md").unlink()
    assert tree_digest(example_project / "lore") == lore_before  # Penwright never wrote there


def test_import_lorebook_json(example_project, tmp_path, capsys):
    src = tmp_path / "world.json"
    src.write_text(json.dumps(LOREBOOK))
    lore_before = sorted(p.name for p in (example_project / "lore").iterdir())
    assert main(["lore", "import", str(src), "--project", str(example_project)]) == 0
    out = capsys.readouterr().out
    dest = example_project / ".penwright" / "lore-import" / "world"
    assert f"Wrote 2 lore entries to {dest}" in out and "disabled" in out and "has no content" in out
    assert "secondary keys ['night']" in out
    assert sorted(p.name for p in (example_project / "lore").iterdir()) == lore_before
    ines = parse_file(dest / "ines-marr.md", dest, 10**6)
    assert ines.problems == [] and ines.entry.name == "Ines Marr" and ines.entry.aliases == ["Ines"]
    assert "brandy" in ines.entry.text
    cutter = parse_file(dest / "the-revenue-cutter-patrols.md", dest, 10**6).entry
    assert cutter.always is True and cutter.keys == ["/revenue (men|cutter)/i"]
    # importing again never overwrites
    assert main(["lore", "import", str(src), "--project", str(example_project)]) == 0
    assert (dest / "ines-marr-2.md").is_file()


def test_import_plain_notes(example_project, tmp_path, capsys):
    notes = tmp_path / "notes"
    (notes / "Characters").mkdir(parents=True)
    (notes / "Places").mkdir()
    (notes / "Characters" / "hester.txt").write_text(
        "Name: Old Hester\nAlso known as: Hester, the bait-wife\n\nSells bait on the quay. Knows every tide.\n"
    )
    (notes / "Places" / "salt_road.md").write_text("# The Salt Road\n\nA track over the marsh to Lisk.\n")
    (notes / "empty.md").write_text("")
    out_dir = example_project / "lore"  # named explicitly: importing straight into the lore folder is allowed
    assert main(["lore", "import", str(notes), "-o", str(out_dir), "--project", str(example_project)]) == 0
    assert "empty.md: is empty" in capsys.readouterr().out
    hester = parse_file(out_dir / "old-hester.md", out_dir, 10**6).entry
    assert (hester.name, hester.type, hester.aliases) == ("Old Hester", "character", ["Hester", "the bait-wife"])
    assert hester.text == "Sells bait on the quay. Knows every tide."
    road = parse_file(out_dir / "the-salt-road.md", out_dir, 10**6).entry
    assert (road.name, road.type) == ("The Salt Road", "location")
    assert main(["lore", "import", str(notes), "-o", str(notes / "out"), "--project", str(example_project)]) == 2
