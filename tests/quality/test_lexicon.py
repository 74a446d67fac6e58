from llavaforge.quality.lexicon import Lexicon, singular_candidates, tokens


def test_plural_candidates_cover_regular_and_irregular_forms():
    assert singular_candidates("people") == ["person"]
    assert "knife" in singular_candidates("knives")
    assert "pony" in singular_candidates("ponies")
    assert "bus" in singular_candidates("buses")
    assert "dog" in singular_candidates("dogs")


def test_longest_form_wins_and_possessive_is_dropped():
    lexicon = Lexicon.default()
    mentions = lexicon.mentions(tokens("The hot dog's wrapper and two dogs"))
    assert [(m.concept, m.form) for m in mentions] == [("hot dog", "hot dog"), ("dog", "dog")]


def test_synonyms_of_any_length_are_found_longest_first():
    lexicon = Lexicon.default({"fire engine": ["big red fire engine", "fire truck"]})
    mentions = lexicon.mentions(tokens("Two big red fire engines, a fire truck and a red truck"))
    assert [(m.concept, m.form) for m in mentions] == [
        ("fire engine", "big red fire engine"), ("fire engine", "fire truck"), ("truck", "truck")]


def test_support_includes_ancestors_only():
    lexicon = Lexicon.default()
    support = lexicon.support(lexicon.concepts_in("a golden retriever"))
    assert {"dog", "pet", "animal"} <= support
    assert "cat" not in support
