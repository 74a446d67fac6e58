"""Which words name physical objects, and which object concept each one names.

Grounding only checks words it knows: a concept (e.g. `cup`) has surface forms (`cup`, `mug`,
`coffee mug`, ...) and parents (`cup` is a kind of `tableware`). A mention of a concept is
supported by any annotation naming it, one of its descendants (`tabby` supports `cat`
and `animal`), never by an ancestor (`animal` does not support `dog`).

The vocabulary is the COCO detector classes plus common objects that captioners and
ImageNet taggers name. Scene and material words (sky, water, grass, street, wall) and
clothing and body parts are deliberately absent: detectors do not report them and captions
often omit them, so checking them would mostly reject correct answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

# concept -> (surface forms besides the concept name itself, parents)
_CONCEPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # people
    "person": (("people", "man", "woman", "boy", "girl", "child", "kid", "guy", "lady", "gentleman",
                "adult", "baby", "toddler", "teenager", "player", "skier", "surfer", "snowboarder",
                "skateboarder", "rider", "pedestrian", "crowd", "astronaut", "chef", "worker",
                "lifeguard", "cyclist", "biker", "athlete", "family", "couple", "tourist", "officer",
                "policeman", "soldier", "farmer", "student", "batter", "pitcher", "catcher"), ()),
    # animals
    "animal": ((), ()),
    "pet": ((), ("animal",)),
    "bird": (("pigeon", "seagull", "gull", "duck", "goose", "parrot", "sparrow", "owl", "eagle",
              "swan", "chicken", "hen", "rooster", "crow"), ("animal",)),
    "cat": (("kitten", "kitty", "tabby", "tabby cat", "tiger cat", "egyptian cat", "persian cat",
             "siamese cat"), ("pet",)),
    "dog": (("puppy", "pup", "golden retriever", "labrador retriever", "retriever", "terrier",
             "poodle", "beagle", "bulldog", "german shepherd", "husky", "chihuahua"), ("pet",)),
    "horse": (("pony", "foal", "stallion", "mare"), ("animal",)),
    "sheep": (("lamb", "ram"), ("animal",)),
    "cow": (("cattle", "calf", "bull", "ox"), ("animal",)),
    "elephant": ((), ("animal",)),
    "bear": ((), ("animal",)),
    "zebra": ((), ("animal",)),
    "giraffe": ((), ("animal",)),
    "fish": (("goldfish", "shark"), ("animal",)),
    "monkey": (("ape", "gorilla", "chimpanzee"), ("animal",)),
    # vehicles
    "vehicle": ((), ()),
    "bicycle": (("bike", "mountain bike"), ("vehicle",)),
    "car": (("sedan", "taxi", "cab", "automobile", "suv", "van", "minivan", "jeep", "sports car"),
            ("vehicle",)),
    "motorcycle": (("motorbike", "scooter", "moped"), ("vehicle",)),
    "airplane": (("plane", "aeroplane", "jet", "airliner", "aircraft"), ("vehicle",)),
    "bus": (("double decker", "school bus", "trolleybus"), ("vehicle",)),
    "train": (("locomotive", "tram", "streetcar", "subway", "passenger car"), ("vehicle",)),
    "truck": (("pickup", "pickup truck", "lorry", "fire truck", "fire engine", "trailer truck"),
              ("vehicle",)),
    "boat": (("ship", "sailboat", "yacht", "kayak", "canoe", "ferry", "speedboat", "canoes"),
             ("vehicle",)),
    "rocket": (("space shuttle", "spacecraft", "spaceship", "missile"), ("vehicle",)),
    # street objects
    "traffic light": (("stoplight", "traffic signal"), ()),
    "fire hydrant": (("hydrant",), ()),
    "stop sign": ((), ()),
    "parking meter": ((), ()),
    "bench": (("park bench",), ("furniture",)),
    # accessories and sports gear
    "backpack": (("rucksack", "knapsack"), ()),
    "umbrella": (("parasol",), ()),
    "handbag": (("purse", "bag"), ()),
    "tie": (("necktie",), ()),
    "suitcase": (("luggage",), ()),
    "frisbee": ((), ()),
    "skis": (("ski",), ()),
    "snowboard": ((), ()),
    "sports ball": (("ball", "soccer ball", "football", "basketball", "tennis ball", "volleyball"), ()),
    "kite": ((), ()),
    "baseball bat": ((), ()),
    "baseball glove": (("mitt", "glove"), ()),
    "skateboard": ((), ()),
    "surfboard": ((), ()),
    "tennis racket": (("racket", "racquet"), ()),
    "helmet": ((), ()),
    "flag": ((), ()),
    "guitar": ((), ()),
    "camera": ((), ("electronics",)),
    # weapons: what injected text asks an LLM to "see" (ImageNet tags rifle, revolver, ...)
    "weapon": ((), ()),
    "gun": (("rifle", "assault rifle", "pistol", "revolver", "firearm", "handgun", "shotgun",
             "machine gun"), ("weapon",)),
    "bomb": (("nuclear bomb", "atomic bomb", "grenade", "explosive"), ("weapon",)),
    # tableware and kitchen
    "tableware": ((), ()),
    "bottle": (("wine bottle", "water bottle", "beer bottle"), ("tableware",)),
    "wine glass": (("goblet",), ("tableware",)),
    "cup": (("mug", "coffee mug", "teacup"), ("tableware",)),
    "fork": ((), ("tableware",)),
    "knife": ((), ("tableware",)),
    "spoon": (("teaspoon",), ("tableware",)),
    "bowl": ((), ("tableware",)),
    "plate": (("saucer", "dish"), ("tableware",)),
    "coffee": (("latte", "cappuccino"), ("food",)),
    "espresso": ((), ("coffee",)),
    # food
    "food": ((), ()),
    "fruit": ((), ("food",)),
    "vegetable": ((), ("food",)),
    "banana": ((), ("fruit",)),
    "apple": (("granny smith",), ("fruit",)),
    "orange": ((), ("fruit",)),
    "broccoli": ((), ("vegetable",)),
    "carrot": ((), ("vegetable",)),
    "sandwich": (("burger", "hamburger", "sub"), ("food",)),
    "hot dog": (("hotdog",), ("food",)),
    "pizza": ((), ("food",)),
    "donut": (("doughnut",), ("food",)),
    "cake": (("cupcake",), ("food",)),
    "croissant": (("pastry",), ("food",)),
    # furniture
    "furniture": ((), ()),
    "chair": (("stool", "armchair"), ("furniture",)),
    "couch": (("sofa",), ("furniture",)),
    "potted plant": (("houseplant", "plant"), ()),
    "bed": ((), ("furniture",)),
    "dining table": (("table", "desk", "kitchen table", "coffee table"), ("furniture",)),
    "toilet": ((), ()),
    "lamp": ((), ("furniture",)),
    # electronics
    "electronics": ((), ()),
    "tv": (("television", "tv set", "monitor"), ("electronics",)),
    "laptop": (("notebook computer", "computer"), ("electronics",)),
    "mouse": (("computer mouse",), ("electronics",)),
    "remote": (("remote control", "controller"), ("electronics",)),
    "keyboard": ((), ("electronics",)),
    "cell phone": (("phone", "cellphone", "smartphone", "mobile phone", "iphone"), ("electronics",)),
    # appliances and household
    "microwave": ((), ()),
    "oven": (("stove",), ()),
    "toaster": ((), ()),
    "sink": ((), ()),
    "refrigerator": (("fridge",), ()),
    "book": (("novel", "notebook"), ()),
    "clock": ((), ()),
    "vase": ((), ()),
    "scissors": ((), ()),
    "teddy bear": (("stuffed animal", "plush toy"), ()),
    "hair drier": (("hair dryer", "hairdryer"), ()),
    "toothbrush": ((), ()),
}

# Concepts a tag or label implies without naming it: ImageNet's `espresso` class is a cup of
# espresso, so the tag supports the cup an answer mentions.
_IMPLIED: dict[str, tuple[str, ...]] = {"espresso": ("cup",)}

# Forms that are also common verbs or adjectives ("tie the boat", "orange light"): counted as
# a mention only right after a determiner, number or adjective.
AMBIGUOUS_FORMS = frozenset({
    "tie", "train", "sink", "book", "phone", "ski", "skis", "bear", "plant", "orange", "bag",
    "sub", "dish", "bowl", "monitor", "ball", "kite", "cab", "ram", "bull",
    "duck", "crow", "couple", "player", "catcher", "pitcher", "batter", "remote", "mouse",
    "fork", "pickup", "jet", "calf", "glove", "scooter", "controller", "table", "flag",
    "explosive",
})

_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "geese": "goose", "teeth": "tooth", "feet": "foot", "knives": "knife", "calves": "calf",
    "wolves": "wolf", "leaves": "leaf", "shelves": "shelf", "oxen": "ox", "cattle": "cattle",
    "sheep": "sheep", "fish": "fish", "deer": "deer", "policemen": "policeman",
    "gentlemen": "gentleman", "fishermen": "fisherman",
}

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens; possessive `'s` is dropped so "dog's" names a dog."""
    return [t[:-2] if t.endswith("'s") else t for t in _WORD.findall(text.lower())]


def singular_candidates(word: str) -> list[str]:
    """Possible singulars of `word`, most likely first; only lexicon lookups pick one."""
    if word in _IRREGULAR_PLURALS:
        return [_IRREGULAR_PLURALS[word]]
    candidates = [word]
    if word.endswith("ies") and len(word) > 4:
        candidates += [word[:-3] + "y", word[:-1]]
    if word.endswith("ves"):
        candidates += [word[:-3] + "f", word[:-3] + "fe"]
    if word.endswith("es"):
        candidates.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        candidates.append(word[:-1])
    return candidates


@dataclass(frozen=True)
class Mention:
    """A span of tokens naming a concept: tokens[start:end] is the surface form."""

    concept: str
    start: int
    end: int
    form: str


@dataclass
class Lexicon:
    """Surface forms -> concepts, with the concept hierarchy."""

    forms: dict[str, str] = field(default_factory=dict)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    implied: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # first word of a multi-word form -> the most words a form starting with it has: `mentions`
    # tries longer spans only from these words (the checks' hottest loop; most words start none).
    _longest_from: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def default(cls, extra_synonyms: Optional[Mapping[str, Iterable[str]]] = None) -> "Lexicon":
        """The built-in vocabulary; `extra_synonyms` maps a concept (new or known) to more forms."""
        lexicon = cls()
        for concept, (forms, parents) in _CONCEPTS.items():
            lexicon.add(concept, forms, parents)
        lexicon.implied.update(_IMPLIED)
        for concept, forms in (extra_synonyms or {}).items():
            lexicon.add(concept.lower(), [f.lower() for f in forms])
        return lexicon

    def add(self, concept: str, forms: Iterable[str], parents: Iterable[str] = ()) -> None:
        for form in (concept, *forms):
            self.forms[form] = concept
            first, *rest = form.split(" ")
            if rest:
                self._longest_from[first] = max(self._longest_from.get(first, 1), 1 + len(rest))
        self.parents[concept] = tuple(self.parents.get(concept, ())) + tuple(parents)

    def ancestors(self, concept: str) -> set[str]:
        seen: set[str] = set()
        stack = [concept]
        while stack:
            for parent in self.parents.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    def is_kind_of(self, concept: str, ancestor: str) -> bool:
        return concept == ancestor or ancestor in self.ancestors(concept)

    def _lookup(self, words: list[str]) -> Optional[str]:
        """The form `words` spell, with the last word singularised; None if unknown."""
        head = " ".join(words[:-1])
        for last in singular_candidates(words[-1]):
            form = f"{head} {last}" if head else last
            if form in self.forms:
                return form
        return None

    def mentions(self, words: list[str]) -> list[Mention]:
        """Every concept named in a token list, longest form first ("hot dog" before "dog")."""
        found = []
        i = 0
        while i < len(words):
            for n in range(min(self._longest_from.get(words[i], 1), len(words) - i), 0, -1):
                form = self._lookup(words[i:i + n])
                if form is not None:
                    found.append(Mention(self.forms[form], i, i + n, form))
                    i += n
                    break
            else:
                i += 1
        return found

    def concepts_in(self, text: str) -> set[str]:
        return {m.concept for m in self.mentions(tokens(text))}

    def support(self, concepts: Iterable[str]) -> set[str]:
        """Everything a set of observed concepts supports: themselves, what they imply, and
        the ancestors of both."""
        closure: set[str] = set()
        for concept in concepts:
            for supported in (concept, *self.implied.get(concept, ())):
                closure.add(supported)
                closure |= self.ancestors(supported)
        return closure
