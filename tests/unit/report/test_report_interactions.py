"""The Interactions section and sentences, rendered from a report's data alone."""

from __future__ import annotations

from copyscope.report.interactions import interaction_pairs, interaction_sentences, section_interactions


def _game(interactions):
    return {"players": ["depth", "planted", "decoy"], "player_kinds": {"depth": "controlnet", "planted": "lora", "decoy": "lora"},
            "headline": "phash", "metrics": {"phash": {"interactions": interactions}, "ssim": {}}}


INTER = {"index": "shapley", "players": ["depth", "planted", "decoy"], "pairs": [[0, 1], [0, 2], [1, 2]],
         "values": [0.03, 0.001, -0.16], "standard_error": [0.01, 0.02, 0.02],
         "ci": [[0.01, 0.05], [-0.03, 0.04], [-0.21, -0.12]], "p_values": [0.004, 0.9, 0.0001],
         "p_adjusted": [0.008, 0.9, 0.0003], "level": 0.95, "alternative": "two-sided", "p_adjust": "holm", "n_seeds": 8}
REPORT = {"settings": {"confidence": 0.95}}


def test_one_sentence_per_significant_pair_with_its_direction():
    said = interaction_sentences(REPORT, _game(INTER))
    assert len(said) == 2  # depth x decoy (Holm p 0.9) is not said
    assert said[0].startswith("ControlNet depth and LoRA planted interact under phash: +0.03 [0.01, 0.05], t test Holm p 0.008")
    assert "more than the sum" in said[0]
    assert said[1].startswith("LoRA planted and LoRA decoy interact") and "less than the sum" in said[1]
    stricter = {"settings": {"confidence": 0.999}}
    assert len(interaction_sentences(stricter, _game(INTER))) == 1  # only p 0.0003 < 0.001


def test_the_section_lists_every_pair_and_says_why_when_missing():
    html = section_interactions(REPORT, _game(INTER))
    assert [(r["a"], r["b"]) for r in interaction_pairs(_game(INTER))] == [("depth", "planted"), ("depth", "decoy"),
                                                                           ("planted", "decoy")]
    assert html.count("<tr>") == 4 and "data:image/svg+xml;base64," in html and "+0.03" in html and "-0.16" in html
    missing = section_interactions(REPORT, _game(None))
    assert "Not computed" in missing and "exact estimator" in missing and interaction_sentences(REPORT, _game(None)) == []
