import pytest

from llavaforge.quality.finding import GIBBERISH
from llavaforge.quality.gibberish import bad_characters, count_words, gibberish_finding, known_words
from llavaforge.schemas.record import Turn

MIN_WORDS, MAX_UNKNOWN = 4, 0.3


def finding(answer, known=frozenset()):
    return gibberish_finding([Turn("human", "<image>\nDescribe the photo."), Turn("gpt", answer)], known,
                             MIN_WORDS, MAX_UNKNOWN)


@pytest.mark.parametrize("answer", [
    "gainessingMulanbr maktences 30)\ufffdV main\ufffd3",
    "looking some\ufffd: shaoing through coffee",
    "A cat\x15 on a mat.",
    "A cat on a mat\ue000.",  # private use
])
def test_invalid_characters_are_gibberish(answer):
    assert finding(answer).reason == GIBBERISH


@pytest.mark.parametrize("answer", [
    "tant880ation pairing Tel umbrellaruante need gainould man at assisla assis ghtown",
    "Ex inty b instructionsU behind maktant sleep Only arasy their Tel Describeasyth expectsleep",
    "gainessingMulanbr maktences main the rostaling",
])
def test_token_soup_is_gibberish(answer):
    assert "not words" in finding(answer).detail


@pytest.mark.parametrize("answer", [
    "A tabby cat sits on a wooden windowsill, looking out at the garden.",
    "The Summer Palace in Beijing is a UNESCO World Heritage Site with a large lake.",
    "It is 9am and the shop at 221B opens in 5 minutes; the 2nd floor is closed.",
    'The awning reads "Boulangerie Pâtisserie du Marché" in gold letters.',  # quoted sign text
    "The iPhone lies next to a MacBook on the desk.",  # two odd tokens of many
    "Yes.",
])
def test_english_with_names_numbers_and_quotes_is_not_gibberish(answer):
    assert finding(answer) is None


def test_words_of_the_annotations_count_as_known():
    answer = "A hen-of-the-woods beside a Grifola frondosa and a Polyporus frondosus."
    assert finding(answer) is not None
    known = known_words(["hen-of-the-woods, hen of the woods, Polyporus frondosus, Grifola frondosa"])
    assert finding(answer, known) is None


def test_counting_skips_numbers_and_single_letters():
    count = count_words("A 3 b 2nd 1990s dog zzxq")
    assert count.words == 2 and count.unknown == ["zzxq"]


def test_bad_characters_names_them():
    assert bad_characters("ok\tfine\n") == []
    assert bad_characters("a\ufffdb\x05") == ["U+FFFD (replacement)", "U+0005 (control)"]
