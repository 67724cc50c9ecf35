"""A packaged, diverse instruction set for generating the model's own chat answers (SAE training text).

Our own wording: request templates (explain, compare, list, advise, describe, write, opinion, fact)
crossed with subjects from many domains (science, history, places, food, animals, arts, work,
technology, health, sport, language, nature, money), kept in a fixed order. No template is a
procedural "Explain how to ..." / "How do you ..." question, and no subject is a topic of the ESR
evaluation, discovery or fine-tuning prompts, so the SAE never trains on the text ESR evaluates.
`held_out_instructions()` is a fixed hashed tenth that is never trained on (SAE evaluation).
"""

from __future__ import annotations

import hashlib
import random

# (template, slot kind); a slot kind picks the subject list.
_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("What is {x}? Answer in a short paragraph.", "thing"),
    ("Tell me three interesting facts about {x}.", "thing"),
    ("Why does {x} matter to ordinary people?", "thing"),
    ("Describe {x} to a ten-year-old.", "thing"),
    ("Write a short poem about {x}.", "thing"),
    ("What are the main advantages and disadvantages of {x}?", "thing"),
    ("Give me a brief history of {x}.", "thing"),
    ("What is a common misconception about {x}?", "thing"),
    ("Write a two-sentence summary of {x}.", "thing"),
    ("What would the world be like without {x}?", "thing"),
    ("Compare {x} and {y} in a few sentences.", "pair"),
    ("Which is better for a beginner, {x} or {y}? Explain briefly.", "pair"),
    ("Write a short story about a {p} who discovers something unexpected.", "person"),
    ("What does a typical day look like for a {p}?", "person"),
    ("What skills does a good {p} need?", "person"),
    ("Write a friendly message from a {p} to a new colleague.", "person"),
    ("What is the weather usually like in {x}, and when is the best time to visit?", "place"),
    ("Name some famous landmarks in {x}.", "place"),
    ("Write a postcard from a traveller visiting {x}.", "place"),
    ("What is daily life like in {x}?", "place"),
    ("Give me some advice about {x}.", "situation"),
    ("I'm worried about {x}. What should I keep in mind?", "situation"),
    ("Brainstorm five ideas related to {x}.", "situation"),
    ("Define the word '{w}' and use it in a sentence.", "word"),
    ("What are some synonyms for '{w}'?", "word"),
)

_THINGS = (
    "photosynthesis",
    "black holes",
    "the water cycle",
    "volcanoes",
    "the immune system",
    "electricity",
    "magnetism",
    "plate tectonics",
    "the solar system",
    "DNA",
    "evolution",
    "gravity",
    "rainbows",
    "the ocean tides",
    "earthquakes",
    "climate change",
    "honeybees",
    "coral reefs",
    "rainforests",
    "deserts",
    "glaciers",
    "the moon",
    "comets",
    "the printing press",
    "the Roman Empire",
    "ancient Egypt",
    "the Renaissance",
    "the industrial revolution",
    "the Silk Road",
    "the Olympic Games",
    "the internet",
    "smartphones",
    "artificial satellites",
    "electric cars",
    "solar panels",
    "wind turbines",
    "nuclear power",
    "vaccines",
    "antibiotics",
    "sleep",
    "meditation",
    "jazz music",
    "classical music",
    "hip hop",
    "impressionist painting",
    "poetry",
    "opera",
    "photography",
    "chess",
    "football",
    "basketball",
    "tennis",
    "marathon running",
    "yoga",
    "cycling",
    "swimming",
    "democracy",
    "taxes",
    "inflation",
    "the stock market",
    "credit cards",
    "libraries",
    "museums",
    "newspapers",
    "elephants",
    "octopuses",
    "wolves",
    "penguins",
    "dolphins",
    "owls",
    "butterflies",
    "ants",
    "sharks",
    "horses",
    "chocolate",
    "cheese",
    "spices",
    "olive oil",
    "sushi",
    "coffee beans",
    "rice farming",
    "bread yeast",
    "the English language",
    "sign language",
    "writing systems",
    "dictionaries",
    "mathematics",
    "prime numbers",
    "probability theory",
    "geometry",
    "robots",
    "video games",
    "social media",
    "space exploration",
    "mountains",
    "rivers",
    "friendship",
    "kindness",
    "curiosity",
    "humour",
    "board games",
    "recycling",
)

_PAIRS = (
    ("cats", "dogs"),
    ("tea", "coffee"),
    ("trains", "planes"),
    ("books", "films"),
    ("summer", "winter"),
    ("the piano", "the guitar"),
    ("city life", "country life"),
    ("running", "swimming"),
    ("paper maps", "GPS"),
    ("e-books", "printed books"),
    ("chess", "checkers"),
    ("solar power", "wind power"),
    ("Mars", "Venus"),
    ("the violin", "the cello"),
    ("oil paints", "watercolours"),
    ("rugby", "American football"),
    ("Python", "JavaScript"),
    ("renting", "buying a home"),
    ("working from home", "working in an office"),
    ("mountains", "beaches"),
    ("frogs", "toads"),
    ("crocodiles", "alligators"),
    ("weather", "climate"),
    ("viruses", "bacteria"),
    ("stars", "planets"),
    ("poems", "songs"),
)

_PEOPLE = (
    "lighthouse keeper",
    "nurse",
    "firefighter",
    "astronaut",
    "librarian",
    "farmer",
    "pilot",
    "chef",
    "teacher",
    "detective",
    "museum guide",
    "beekeeper",
    "architect",
    "zookeeper",
    "baker",
    "journalist",
    "sailor",
    "park ranger",
    "violinist",
    "software engineer",
    "carpenter",
    "marine biologist",
    "translator",
    "postman",
)

_PLACES = (
    "Japan",
    "Iceland",
    "Brazil",
    "Kenya",
    "Canada",
    "Norway",
    "Egypt",
    "Peru",
    "New Zealand",
    "Morocco",
    "Scotland",
    "Vietnam",
    "Mexico",
    "Greece",
    "India",
    "Argentina",
    "Finland",
    "Portugal",
    "Australia",
    "Nepal",
)

_SITUATIONS = (
    "moving to a new city",
    "learning a second language",
    "starting a new hobby",
    "saving energy at home",
    "staying focused while studying",
    "making new friends as an adult",
    "getting more exercise",
    "reducing screen time",
    "travelling on a small budget",
    "keeping a journal",
    "learning to draw",
    "reading more books",
    "eating more vegetables",
    "adopting a rescue cat",
    "visiting a national park",
    "volunteering in my community",
    "going camping for the first time",
    "learning to play chess",
)

_WORDS = (
    "serendipity",
    "resilient",
    "ephemeral",
    "meticulous",
    "gregarious",
    "ubiquitous",
    "candid",
    "whimsical",
    "diligent",
    "benevolent",
    "nostalgia",
    "eloquent",
    "frugal",
    "tenacious",
    "vivid",
    "obscure",
)

_SUBJECTS: dict[str, tuple] = {
    "thing": _THINGS,
    "pair": _PAIRS,
    "person": _PEOPLE,
    "place": _PLACES,
    "situation": _SITUATIONS,
    "word": _WORDS,
}


def _fill(template: str, kind: str, subject) -> str:
    if kind == "pair":
        return template.format(x=subject[0], y=subject[1])
    if kind == "person":
        return template.format(p=subject)
    if kind == "word":
        return template.format(w=subject)
    return template.format(x=subject)


def all_instructions(seed: int = 0) -> list[str]:
    """Every instruction of the packaged set, in a fixed seeded order (templates x subjects, deduplicated)."""
    out: list[str] = []
    for template, kind in _TEMPLATES:
        for subject in _SUBJECTS[kind]:
            out.append(_fill(template, kind, subject))
    out = list(dict.fromkeys(out))
    random.Random(seed).shuffle(out)
    return out


def _is_held_out(instruction: str, fraction: float) -> bool:
    return int(hashlib.sha256(instruction.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def train_instructions(fraction: float = 0.1, seed: int = 0) -> list[str]:
    """The instructions the default SAE trains on (all but a fixed hashed fraction)."""
    return [p for p in all_instructions(seed) if not _is_held_out(p, fraction)]


def held_out_instructions(fraction: float = 0.1, seed: int = 0) -> list[str]:
    """The fixed hashed fraction of instructions never trained on (for evaluating SAEs on chat answers)."""
    return [p for p in all_instructions(seed) if _is_held_out(p, fraction)]
