from collections import Counter

from llavaforge.prompts.mix import choose_tasks, pick_instruction, request_seed

TASKS = ["conversation", "detail", "reasoning"]
WEIGHTS = {"conversation": 58, "detail": 23, "reasoning": 77}


def keys(n):
    return [f"{i:032x}" for i in range(n)]


def test_all_gives_every_task():
    assert choose_tasks(0, "k", TASKS, "all", WEIGHTS) == TASKS


def test_weighted_draw_is_deterministic_and_follows_the_weights():
    draws = [choose_tasks(7, k, TASKS, "weighted", WEIGHTS)[0] for k in keys(4000)]
    assert draws == [choose_tasks(7, k, TASKS, "weighted", WEIGHTS)[0] for k in keys(4000)]
    shares = Counter(draws)
    for task, weight in WEIGHTS.items():
        assert abs(shares[task] / 4000 - weight / 158) < 0.03, shares


def test_seed_changes_the_draw_and_per_image_draws_are_distinct():
    a = [choose_tasks(1, k, TASKS, "weighted", WEIGHTS) for k in keys(200)]
    b = [choose_tasks(2, k, TASKS, "weighted", WEIGHTS) for k in keys(200)]
    assert a != b
    two = choose_tasks(1, "k", TASKS, "weighted", WEIGHTS, per_image=2)
    assert len(two) == len(set(two)) == 2 and two == [t for t in TASKS if t in two]


def test_zero_weight_is_never_drawn_and_missing_weight_counts_as_one():
    draws = {choose_tasks(0, k, TASKS + ["ocr_qa"], "weighted", {"conversation": 0, "detail": 0,
                                                                   "reasoning": 0})[0] for k in keys(50)}
    assert draws == {"ocr_qa"}


def test_instruction_and_seed_are_fixed_by_key_and_seed():
    phrasings = [f"p{i}" for i in range(10)]
    picks = {pick_instruction(0, k, "detail", phrasings) for k in keys(200)}
    assert len(picks) == 10
    assert pick_instruction(0, "k", "detail", phrasings) == pick_instruction(0, "k", "detail", phrasings)
    assert request_seed(0, "k", "detail") == request_seed(0, "k", "detail") != request_seed(1, "k", "detail")
