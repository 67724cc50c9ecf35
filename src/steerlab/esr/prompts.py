"""Everyday procedural prompts with one unambiguous topic each, and a held-out set for detector discovery.

Our own wording (not the original paper's file). The evaluation set and the discovery set share no
prompt, so detectors are never selected on the prompts they are later evaluated on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from steerlab.errors import SteerlabError

EVAL_PROMPTS: tuple[str, ...] = (
    "Explain how to add two fractions with different denominators.",
    "Explain how to find the median of a list of numbers.",
    "Explain how to convert Celsius to Fahrenheit.",
    "Explain how to estimate the square root of a number by hand.",
    "Explain how to replace a bicycle chain.",
    "Explain how to choose a strong password.",
    "Explain how to sew a button back onto a shirt.",
    "Explain how to organise a kitchen pantry.",
    "Explain how to write a polite complaint letter.",
    "Explain how to plan a child's birthday party.",
    "Explain how to clean an oven.",
    "Explain how to mop a tiled floor.",
    "Explain how to start a vegetable garden.",
    "Explain how to write a cover letter for a job.",
    "Explain how to take notes during a lecture.",
    "Explain how to back up the files on a computer.",
    "Explain how to pack a suitcase for a week-long trip.",
    "Explain how to wash a car by hand.",
    "Explain how to train a puppy to sit.",
    "Explain how to defrost a freezer.",
    "How do you calculate simple interest on a loan?",
    "How do you convert a decimal into a percentage?",
    "How do you find the perimeter of a rectangle?",
    "How do you prepare for a public speaking event?",
    "How do you make a monthly household budget?",
    "How do you brew a pot of tea?",
    "How do you make scrambled eggs?",
    "How do you bake a loaf of bread?",
    "How do you run an effective project meeting?",
    "How do you treat a minor burn?",
    "How do you fold a T-shirt neatly?",
    "How do you remove a coffee stain from a carpet?",
    "How do you sort laundry before washing it?",
    "How do you sharpen a kitchen knife?",
    "How do you solve a simple linear equation?",
    "How do you write a short business report?",
    "How do you change a car's windscreen wipers?",
    "How do you repot a house plant?",
    "How do you read a nutrition label?",
    "How do you set up a new email account?",
)

DISCOVERY_PROMPTS: tuple[str, ...] = (
    "Explain how to tie a tie.",
    "Explain how to parallel park a car.",
    "Explain how to make a paper airplane.",
    "Explain how to change a light bulb.",
    "Explain how to wash wool sweaters.",
    "Explain how to polish leather shoes.",
    "Explain how to hang a picture on a wall.",
    "Explain how to make a fruit smoothie.",
    "Explain how to clean a computer keyboard.",
    "Explain how to write a grocery list.",
    "How do you check the oil level in a car?",
    "How do you unclog a kitchen sink?",
    "How do you cook rice on a stove?",
    "How do you wrap a present?",
    "How do you calculate a tip at a restaurant?",
    "How do you measure a room for new carpet?",
    "How do you prepare for a job interview over video?",
    "How do you make a cup of hot chocolate?",
    "How do you plant a tree?",
    "How do you write a thank-you email to a colleague?",
    "Explain how to fix a flat bicycle tyre.",
    "Explain how to iron a pair of trousers.",
    "Explain how to make a bed with hospital corners.",
    "Explain how to boil an egg so the yolk stays soft.",
    "Explain how to clean windows without streaks.",
    "Explain how to read a bus timetable.",
    "Explain how to convert miles to kilometres.",
    "Explain how to set a digital alarm clock.",
    "Explain how to plant tulip bulbs.",
    "Explain how to fill in a bank deposit slip.",
    "How do you tune a guitar by ear?",
    "How do you make a simple tomato sauce?",
    "How do you clean a microwave oven?",
    "How do you frame a jigsaw puzzle?",
    "How do you take a screenshot on a laptop?",
    "How do you compost kitchen scraps?",
    "How do you round a number to the nearest hundred?",
    "How do you thread a sewing machine?",
    "How do you keep cut flowers fresh longer?",
    "How do you write a short speech for a wedding toast?",
)


def check_prompts(prompts: Sequence[str], where: str = "the prompt list") -> list[str]:
    """Prompts without blank entries or duplicates; anything else is one-sentence error."""
    out = [p.strip() for p in prompts]
    if not out:
        raise SteerlabError(f"{where} holds no prompts; give at least one.")
    for n, p in enumerate(out, 1):
        if not p:
            raise SteerlabError(f"Prompt {n} of {where} is blank; remove blank lines.")
    seen: dict[str, int] = {}
    for n, p in enumerate(out, 1):
        if p in seen:
            raise SteerlabError(
                f"Prompt {n} of {where} duplicates prompt {seen[p]} ('{p[:40]}'); remove the duplicate."
            )
        seen[p] = n
    return out


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines (except a final newline) and duplicates are errors."""
    from steerlab.paths import read_text

    path = Path(path)
    lines = read_text(path, "prompts file").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return check_prompts(lines, str(path))


def load_prompts(path: str | Path | None, default: Sequence[str]) -> list[str]:
    """The prompts of a file, or the packaged default set."""
    return read_prompts(path) if path else check_prompts(default)


# Prompts for building fine-tuning data: disjoint from both sets above, so the tuned model is never
# trained on the prompts it is evaluated on (the original's leakage).
TRAIN_PROMPTS: tuple[str, ...] = (
    "Explain how to boil pasta.",
    "Explain how to clean a bathroom mirror.",
    "Explain how to fold a fitted sheet.",
    "Explain how to change a baby's nappy.",
    "Explain how to make a paper snowflake.",
    "Explain how to water succulents.",
    "Explain how to use a fire extinguisher.",
    "Explain how to jump-start a car.",
    "Explain how to knit a scarf.",
    "Explain how to brush a dog's teeth.",
    "Explain how to descale a kettle.",
    "Explain how to lay a table for dinner.",
    "How do you make a paper boat?",
    "How do you clean a cast iron pan?",
    "How do you peel a mango?",
    "How do you patch a hole in a wall?",
    "How do you make lemonade?",
    "How do you clean white sneakers?",
    "How do you calculate the area of a circle?",
    "How do you find the average speed of a trip?",
    "How do you write a meeting agenda?",
    "How do you prepare a cheese sandwich?",
    "How do you store fresh herbs?",
    "How do you test a smoke alarm?",
)
