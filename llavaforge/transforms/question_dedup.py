"""QuestionDedup: the same first question asked of many images is kept at most N times.

Questions are compared after normalisation (`minhash.normalise_question`) by MinHash over
character shingles, with LSH bands so only candidates that share a band are compared.
Near-identical questions join the group of the smallest (by text) question similar to them
(one hop, so groups never chain). Per group the first N samples by (shard URL, member, key,
task) are kept; the others become sample rejects (reason `duplicate_question`), and an image
left with no conversation gets one image-level reject as well.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple, Optional

import apache_beam as beam

from llavaforge.quality.minhash import MinHasher, bands, normalise_question, similarity
from llavaforge.schemas.llava import HUMAN
from llavaforge.schemas.record import ImageRecord, Reject
from llavaforge.transforms.base import StageFn, join_by_key
from llavaforge.config.check import QuestionDedupConfig
from llavaforge.transforms.conversations import keep_conversations

STAGE = "question_dedup"
DUPLICATE_QUESTION = "duplicate_question"


class Asked(NamedTuple):
    """One sample's first question: `rank` orders the samples of one question group."""

    rank: tuple[str, str, str, str]  # (shard URL, member, key, task)
    key: str
    task: str
    question: str


def asked(record: ImageRecord, tasks: frozenset[str]) -> Iterator[Asked]:
    for conversation in record.conversations:
        turns = conversation.turns
        if conversation.task in tasks and turns and turns[0].role == HUMAN:
            question = normalise_question(turns[0].value)
            if question:
                yield Asked((*record.source.sort_key, record.key, conversation.task),
                            record.key, conversation.task, question)


def similar_pairs(bucket: Iterable[tuple[str, tuple[int, ...]]], threshold: float
                  ) -> Iterator[tuple[str, str]]:
    """(question, smaller similar question) for the pairs of one LSH bucket."""
    items = sorted(set(bucket))
    for i, (question, signature) in enumerate(items):
        for other, other_signature in items[i + 1:]:
            if similarity(signature, other_signature) >= threshold:
                yield other, question


def dropped_samples(group: tuple[str, dict[str, Iterable]], max_copies: int
                    ) -> Iterator[tuple[str, tuple[str, str]]]:
    """(key, (task, detail)) of every sample of a group beyond the kept ones."""
    representative, joined = group
    kept = {a.rank for top in joined["kept"] for a in top}
    first = min(kept)
    for sample in joined["samples"]:
        if sample.rank not in kept:
            yield sample.key, (sample.task, f"first question {sample.question!r} is a copy of "
                                            f"{representative!r}; {max_copies} kept (first: {first[2]})")


class _DropQuestionsFn(StageFn):
    stage = STAGE

    def process_element(self, element) -> Iterator:
        _, joined = element
        dropped = dict(joined["dropped"])  # task -> detail
        for record in joined["records"]:
            kept = [c for c in record.conversations if c.task not in dropped]
            rejects = [Reject.of(record.key, record.source, STAGE, DUPLICATE_QUESTION, dropped[c.task],
                                 task=c.task)
                       for c in record.conversations if c.task in dropped]
            yield from keep_conversations(record, kept, rejects, STAGE)


class QuestionDedup(beam.PTransform):
    """ImageRecords -> (records, rejects) with at most `max_copies` samples per question."""

    def __init__(self, config: QuestionDedupConfig, seed: int = 0) -> None:
        super().__init__()
        self._config = config
        self._seed = seed

    def expand(self, records):
        config, seed = self._config, self._seed
        tasks = frozenset(config.tasks)
        samples = records | "FirstQuestions" >> beam.FlatMap(asked, tasks)
        signatures = (
            samples
            | "QuestionText" >> beam.Map(lambda a: a.question)
            | "DistinctQuestions" >> beam.Distinct()
            | "Sign" >> beam.Map(lambda q, hasher=MinHasher(seed=seed): (q, hasher.signature(q)))
        )
        representative = (
            (signatures | "Self" >> beam.Map(lambda qs: (qs[0], qs[0])),
             signatures
             | "ByBand" >> beam.FlatMap(lambda qs: [(b, qs) for b in bands(qs[1])])
             | "GroupBand" >> beam.GroupByKey()
             | "SimilarPairs" >> beam.FlatMap(lambda kv: similar_pairs(kv[1], config.threshold)))
            | "SelfAndSimilar" >> beam.Flatten()
            | "Representative" >> beam.CombinePerKey(min)
        )
        grouped = (
            {"samples": samples | "ByQuestion" >> beam.Map(lambda a: (a.question, a)),
             "representative": representative}
            | "JoinRepresentative" >> beam.CoGroupByKey()
            | "ByRepresentative" >> beam.FlatMap(
                lambda kv: [(rep, a) for rep in kv[1]["representative"] for a in kv[1]["samples"]])
        )
        kept = grouped | "KeepFirst" >> beam.combiners.Top.PerKey(
            config.max_copies, key=lambda a: a.rank, reverse=True)
        dropped = (
            {"samples": grouped, "kept": kept}
            | "JoinKept" >> beam.CoGroupByKey()
            | "Dropped" >> beam.FlatMap(dropped_samples, config.max_copies)
        )
        return join_by_key(records, "dropped", dropped, _DropQuestionsFn(), "DropCopies")

