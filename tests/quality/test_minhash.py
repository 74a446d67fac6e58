from llavaforge.quality.minhash import MinHasher, bands, normalise_question, similarity


def test_normalise_drops_image_token_case_and_punctuation():
    assert normalise_question("<image>\nWhat is in THIS image?") == normalise_question("what is in the image") == "what image"


def test_similar_questions_have_similar_signatures():
    hasher = MinHasher(seed=1)
    a = hasher.signature("what is the man holding in his right hand")
    b = hasher.signature("what is the man holding in his left hand")
    c = hasher.signature("how many dogs are playing in the park")
    assert similarity(a, a) == 1.0
    assert similarity(a, b) > 0.6 > similarity(a, c)


def test_signatures_are_stable_across_instances():
    assert MinHasher(seed=3).signature("what color is the car") == MinHasher(seed=3).signature("what color is the car")
    assert len(bands(MinHasher().signature("x"))) == 16
