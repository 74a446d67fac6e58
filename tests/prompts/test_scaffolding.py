from llavaforge.prompts.context import OCR_HEADER, QUOTE_OPEN, SOURCE_HEADER
from llavaforge.prompts.library import load_library
from llavaforge.prompts.scaffolding import prompt_scaffolding


def test_scaffolding_holds_headers_fences_and_library_texts_but_not_the_instructions():
    library = load_library()
    scaffolding = prompt_scaffolding(library)
    assert OCR_HEADER in scaffolding.headers and SOURCE_HEADER in scaffolding.headers
    assert QUOTE_OPEN in scaffolding.fences
    texts = "\n".join(scaffolding.texts)
    for task in library.tasks.values():
        assert task.spec.system in scaffolding.texts
        assert all(shot.output in scaffolding.texts for shot in task.spec.examples)
        # `answer` tasks' instructions are the human turns of their samples, not leakage
        assert not any(instruction in texts for instruction in task.spec.instructions)
