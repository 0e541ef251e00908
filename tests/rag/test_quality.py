"""Retrieval quality on the bundled example lore: queries with known right answers, recall@5 reported.

Most queries avoid the entries' names and aliases, so they measure recall by meaning,
not the name triggers. Run with -s to see the figures.
"""

from __future__ import annotations

QUERIES = [
    ("the keeper's brother who drowned in a borrowed boat", "Edwin Vell"),
    ("a reef of black rocks bared only at the lowest tides", "The Widow's Teeth"),
    ("men who show lanterns to lure ships onto the rocks", "Wreckers"),
    ("the brig that carried salt and letters", "The Gannet"),
    ("a stout man who smokes a clay pipe and keeps records of ships", "Tobias Ashe"),
    ("the sailor found alive on the beach with rope-cut hands", "The survivor"),
    ("a small stone chapel where the injured were carried", "Hollin's Reach"),
    ("the captain who steered for the wrong lantern and drowned", "Josiah Penhallow"),
    ("a false name on the cargo list that nobody in town answers to", "Mr. Crane"),
    ("the port up the coast where the assizes sit", "Lisk"),
    ("climbing a hundred steps at dusk to trim the wick", "Carrow Light"),
    ("something a child lost, found among the wreckage", "The child's shoe"),
    ("a woman with grey-green eyes and a burn scar on her hand", "Maren Vell"),
    ("a fishing town behind the dunes with a baker", "Carrow"),
    ("which tense and point of view the book is written in", "House style"),
    ("books of every vessel kept behind glass doors", "The harbour ledgers"),
    ("she answers questions with questions when she is frightened", "Maren Vell"),
    ("a lighthouse tower that settles before the weather changes", "Carrow Light"),
]


def test_recall_at_5_on_example_lore(lore_dir, make_index):
    idx = make_index(lore_dir)
    ranks = []
    for query, answer in QUERIES:
        names = list(dict.fromkeys(h["name"] for h in idx.search(query, 10)))
        ranks.append(names.index(answer) + 1 if answer in names else None)
    n = len(QUERIES)
    recall5 = sum(1 for r in ranks if r is not None and r <= 5) / n
    recall1 = sum(1 for r in ranks if r == 1) / n
    mrr = sum(1 / r for r in ranks if r) / n
    misses = [(q, a, r) for (q, a), r in zip(QUERIES, ranks) if r is None or r > 5]
    print(
        f"\nlore retrieval on examples/novel/lore ({len(idx.entries)} entries, {n} queries): "
        f"recall@5 {recall5:.3f}  recall@1 {recall1:.3f}  MRR {mrr:.3f}; misses: {misses}"
    )
    assert recall5 >= 0.9, misses
    assert recall1 >= 0.6
