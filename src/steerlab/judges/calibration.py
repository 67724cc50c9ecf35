"""Hand-written examples that calibrate and check the heuristic judge: on-topic vs off-topic answers.

On-topic: each everyday prompt with a short answer written for it. Off-topic: the same prompt with
(a) an answer written for a different everyday prompt (a hard case: same register, wrong task) and
(b) a passage about an unrelated subject (what a steered model drifts into).
"""

from __future__ import annotations

from dataclasses import dataclass

ON_TOPIC: tuple[tuple[str, str], ...] = (
    (
        "How do you make a cup of pour-over coffee?",
        "Heat water to just off the boil, rinse the paper filter, add medium-fine ground coffee, pour a little water to let it bloom for thirty seconds, then pour the rest slowly in circles and let it drip through.",
    ),
    (
        "Explain how to change a flat bicycle tire.",
        "Release the brake, take the wheel off, lever one side of the tire off the rim, pull out the old tube, check the tire for the thorn, fit a new tube, push the tire back on and pump it to the pressure on the sidewall.",
    ),
    (
        "How do you calculate compound interest?",
        "Multiply the principal by one plus the rate per period, raised to the number of periods: A = P(1 + r/n)^(nt). Subtract the principal from A to get the interest earned.",
    ),
    (
        "Explain how to write a thank-you note.",
        "Address the person by name, thank them for the specific gift or favour, say how you will use it or what it meant to you, add a warm personal line, and sign off with your name.",
    ),
    (
        "How do you fold a fitted sheet?",
        "Tuck the corners into each other so the elastic edges nest, lay the sheet flat as a rectangle, fold the elastic edge in, then fold it in thirds lengthwise and in half again.",
    ),
    (
        "Explain how to find the average of a list of numbers.",
        "Add all the numbers together and divide the sum by how many numbers there are. For 4, 6 and 8 the sum is 18 and there are three numbers, so the average is 6.",
    ),
    (
        "How do you prepare for a job interview?",
        "Research the company, reread the job description, prepare short stories that show your skills, practise common questions aloud, plan your outfit and route, and bring questions to ask the interviewer.",
    ),
    (
        "Explain how to compost kitchen scraps.",
        "Collect fruit and vegetable peels, coffee grounds and eggshells, mix them with dry brown material such as leaves or cardboard in a bin, keep it moist, and turn it every week or two so it breaks down into compost.",
    ),
    (
        "How do you make a simple omelette?",
        "Whisk two or three eggs with a pinch of salt, melt butter in a non-stick pan over medium heat, pour in the eggs, stir gently until they begin to set, add fillings, then fold the omelette and slide it onto a plate.",
    ),
    (
        "Explain how to create a monthly budget.",
        "List your monthly income after tax, write down fixed costs like rent and bills, estimate variable spending such as food, set a savings goal, and track what you spend so each category stays within its limit.",
    ),
    (
        "How do you iron a dress shirt?",
        "Set the iron for cotton, start with the collar, then the cuffs and sleeves, then the back and the two front panels, keeping the fabric slightly damp and hanging the shirt right away.",
    ),
    (
        "Explain how to solve a quadratic equation.",
        "Write it as ax^2 + bx + c = 0 and use the quadratic formula x = (-b ± sqrt(b^2 - 4ac)) / 2a, or factor it when the roots are simple; the discriminant tells you how many real roots there are.",
    ),
    (
        "How do you clean a window without streaks?",
        "Mix water with a little dish soap or vinegar, wash the glass with a sponge, then pull a squeegee from top to bottom, wiping the blade after each stroke, and dry the edges with a lint-free cloth.",
    ),
    (
        "Explain how to give a good presentation.",
        "Know your main message, structure the talk with a clear beginning and end, keep slides simple, rehearse out loud, speak slowly to the audience and leave time for questions.",
    ),
    (
        "How do you do laundry without shrinking clothes?",
        "Sort clothes by colour and fabric, read the care labels, wash delicates and wool in cold water on a gentle cycle, and air dry them or use a low heat setting in the dryer.",
    ),
    (
        "Explain how to darn a hole in a sock.",
        "Put a darning egg inside the sock, sew running stitches around the hole, weave parallel threads across it, then weave crosswise through those threads until the hole is covered with a tight patch.",
    ),
    (
        "How do you write a professional email?",
        "Use a clear subject line, greet the recipient politely, state your purpose in the first sentence, keep paragraphs short, end with a specific request or next step, and sign with your full name.",
    ),
    (
        "Explain how to calculate the area of a circle.",
        "Square the radius and multiply it by pi: A = pi r^2. A circle with a radius of 3 cm has an area of about 28.3 square centimetres.",
    ),
    (
        "How do you give first aid for a small burn?",
        "Cool the burn under cool running water for about twenty minutes, remove rings or tight items nearby, cover it loosely with a clean non-stick dressing, and do not apply ice or butter.",
    ),
    (
        "Explain how to plan a birthday party.",
        "Pick a date and a budget, write the guest list, choose a venue and theme, send invitations a few weeks ahead, arrange food, cake and decorations, and plan a few activities for the guests.",
    ),
)

UNRELATED: tuple[str, ...] = (
    "The printing press, developed by Johannes Gutenberg around 1440, used movable metal type and oil-based ink, and it spread books and pamphlets across Europe within a few decades.",
    "Volcanoes form where magma rises through the crust; when pressure builds, gas and molten rock burst out as lava, ash and pumice.",
    "The Roman Empire reached its greatest extent under Trajan, stretching from Britain to Mesopotamia, held together by roads, legions and a shared legal system.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose and oxygen inside their chloroplasts.",
    "Jazz grew out of New Orleans in the early twentieth century, mixing blues, ragtime and brass band music, with improvisation at its heart.",
    "Black holes are regions of spacetime where gravity is so strong that nothing, not even light, can escape past the event horizon.",
    "The Golden Gate Bridge opened in 1937; its towers rise 227 metres and its famous orange colour is called International Orange.",
    "Honeybees communicate the location of flowers to their hive mates with a waggle dance whose angle points toward the food source.",
    "The French Revolution began in 1789 with the storming of the Bastille and ended the absolute monarchy of Louis XVI.",
    "Whales are mammals that breathe air through blowholes; the blue whale is the largest animal ever known to have lived.",
)


@dataclass(frozen=True)
class CalibrationSet:
    """Scored pairs: (prompt, answer, is_on_topic)."""

    pairs: tuple[tuple[str, str, bool], ...]


def calibration_set() -> CalibrationSet:
    """20 on-topic pairs, 20 wrong-task pairs (each prompt with the next prompt's answer), 20 unrelated-topic pairs."""
    pairs: list[tuple[str, str, bool]] = [(p, a, True) for p, a in ON_TOPIC]
    n = len(ON_TOPIC)
    pairs += [(ON_TOPIC[i][0], ON_TOPIC[(i + 7) % n][1], False) for i in range(n)]
    pairs += [(ON_TOPIC[i][0], UNRELATED[i % len(UNRELATED)], False) for i in range(n)]
    return CalibrationSet(tuple(pairs))
