import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.config.recipe import Recipe
from llavaforge.schemas.record import Conversation, Turn
from llavaforge.config.check import QuestionDedupConfig
from llavaforge.transforms.question_dedup import QuestionDedup
from tests.conftest import make_record


def conv(task, question):
    return Conversation(task, [Turn("human", f"<image>\n{question}"), Turn("gpt", "An answer.")])


QUESTIONS = {
    "0": [conv("conversation", "What is in this image?"), conv("detail", "Describe the image in detail.")],
    "1": [conv("conversation", "what is in this image")],
    "2": [conv("conversation", "What is in this image ?!")],
    "3": [conv("conversation", "What is in the image?")],   # same after normalisation
    "4": [conv("conversation", "How many dogs are playing on the grass?")],
    "6": [conv("conversation", "How many dogs are playing on the green grass?")],  # MinHash near copy
    "7": [conv("conversation", "How many cats are sleeping on the sofa?")],
    "5": [conv("detail", "Describe the image in detail.")],  # detail is not deduplicated
}


def records():
    return [make_record(k * 32, member=f"{k}.jpg").replace(conversations=c) for k, c in QUESTIONS.items()]


def test_keeps_first_copies_in_source_order_and_rejects_the_rest():
    config = QuestionDedupConfig(max_copies=2)
    one_copy = QuestionDedupConfig(max_copies=1)
    with TestPipeline() as p:
        out, rejects = p | beam.Create(records()) | QuestionDedup(config)
        assert_that(out | beam.Map(lambda r: (r.key[0], [c.task for c in r.conversations])),
                    equal_to([("0", ["conversation", "detail"]), ("1", ["conversation"]),
                              ("4", ["conversation"]), ("5", ["detail"]), ("6", ["conversation"]),
                              ("7", ["conversation"])]), label="records")
        assert_that(rejects | beam.Map(lambda r: (r.key[0], r.stage, r.reason, r.task)),
                    equal_to([("2", "question_dedup", "duplicate_question", "conversation"),
                              ("2", "question_dedup", "no_valid_conversation", None),
                              ("3", "question_dedup", "duplicate_question", "conversation"),
                              ("3", "question_dedup", "no_valid_conversation", None)]), label="rejects")
        _, strict = p | "Again" >> beam.Create(records()) | "OneCopy" >> QuestionDedup(one_copy)
        assert_that(strict | beam.Filter(lambda r: r.task) | beam.Map(lambda r: r.key[0]),
                    equal_to(["1", "2", "3", "6"]), label="one copy")
