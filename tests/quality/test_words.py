from llavaforge.quality.words import common_words, english_words


def test_word_lists_load_from_the_package():
    words = english_words()
    assert len(words) > 70_000 and {"espresso", "labyrinth", "beijing", "don't"} <= words
    assert "gainould" not in words and "umbrellaruante" not in words
    common = common_words()
    assert 3_000 < len(common) < 6_000 and {"today", "person", "watch"} <= common
    assert not {"banana", "rifle", "pirate"} & common
