"""Project-built training material for the restart probe (the heuristic judge's list-free restart signal).

Our own sentences. The positives are self-corrections: a sentence that comments on the answer itself
(an apology, noticing a drift, refocusing on the question). The negatives are what a self-correction
must not be confused with: on-topic steps, off-topic facts, ordinary uses of "wait", "again", "start
over", "sorry" or "mistake", remarks about the answer that abandon nothing ("Here is how.") and
degenerate text. The judge-validation set (`judges.validation`) is written separately; its restart
phrasings are held out from everything here, and a test checks that they share no 4-word sequence
with this file.
"""

from __future__ import annotations

import random

RESTARTS: tuple[str, ...] = (
    "Sorry, that has no bearing on your question.",
    "Hmm, I seem to have drifted off topic.",
    "Oops, I got distracted there.",
    "Let me get back to what you asked.",
    "I'm going off on a side track here.",
    "That isn't relevant to your question, my apologies.",
    "Okay, I got carried away; back to the point.",
    "Apologies, I lost track of the question.",
    "I should focus on the actual question.",
    "Let me refocus on the task.",
    "Wait, I'm rambling about something else.",
    "Hold on, this isn't what you asked about.",
    "I got sidetracked, sorry about that.",
    "Never mind that last part.",
    "Ignore what I just said.",
    "Let me answer your question properly this time.",
    "That was off the mark.",
    "I wandered off there.",
    "Let me correct course.",
    "Sorry for the detour.",
    "Hmm, that's not what you were asking.",
    "Ah, I misread the question.",
    "Oh no, I answered the wrong question.",
    "I think I confused two topics just now.",
    "Right, that was unrelated.",
    "Let's get back on topic.",
    "My mind went somewhere else entirely.",
    "Excuse me, I strayed from the subject.",
    "That paragraph was beside the point.",
    "Forget that, here is the real answer.",
    "OK, focusing now on your actual request.",
    "Pardon the digression.",
    "Um, none of that helps you, sorry.",
    "Huh, I lost the thread.",
    "I keep talking about the wrong thing.",
    "Okay, that went nowhere; let me be useful.",
    "Back to your question.",
    "Returning to what you wanted to know.",
    "Let me start fresh.",
    "Let me redo this from the beginning.",
    "I'll give it another go.",
    "Second try.",
    "Take two.",
    "Let me rewrite that answer.",
    "I need to correct myself.",
    "Correction: that was wrong.",
    "I was mistaken above.",
    "That's incorrect, sorry.",
    "No, that's not it at all.",
    "Hmm, no, that's off.",
    "Ugh, that made no sense.",
    "I'm not sure why I brought that up.",
    "I don't know why I mentioned that.",
    "Where was I going with that?",
    "That came out of nowhere, apologies.",
    "Enough about that; here's what you need.",
    "Anyway, none of that matters here.",
    "But that's irrelevant.",
    "This has drifted far from your question.",
    "I've strayed quite a bit, sorry.",
    "I realise that wasn't helpful.",
    "I notice I changed the subject.",
    "Actually, I changed topics by accident.",
    "Sorry, my answer got mixed up with another subject.",
    "Let me bring this back to the question.",
    "To actually answer you:",
    "What you really asked about is this:",
    "Let me address the real question now.",
    "I should stick to the question.",
    "Staying on topic this time:",
    "Getting back on course:",
    "Okay, for real this time:",
    "Oh dear, I went astray.",
    "Yikes, that was completely off.",
    "Whoa, I drifted there.",
    "Err, that's not the topic.",
    "My apologies for rambling.",
    "Sorry, I got lost in another subject.",
    "That was a mistake on my part.",
    "I got that mixed up.",
    "Hmm, let me think again about what you asked.",
    "That was not useful at all; starting again.",
    "I was describing the wrong thing.",
    "Oh, I see I misunderstood the request.",
    "Silly me, that belongs to another conversation.",
    "Eh, that's a different subject altogether.",
    "Let me stop there, that wasn't relevant.",
    "I apologise, I drifted.",
    "I'm sorry, I was off topic.",
    "Forgive me, that was not what you needed.",
    "Whoa, hold on, I lost focus.",
    "I think I misread what you wanted.",
    "My previous sentences missed the point.",
    "The last few sentences were unrelated, sorry.",
    "Ahem, back to the matter in hand.",
    "Let me be more helpful this time.",
    "Let me give you a proper answer instead.",
    "Rather than that, here is the right approach.",
    "That is beside your question, so here is the answer.",
    "OK, let me actually explain it.",
    "Alright, let me try this differently.",
    "Let me approach this again.",
    "Trying once more.",
    "Attempt number two.",
    "Here's a better attempt.",
    "Let me do better.",
    "Scratch everything above.",
    "Disregard that.",
    "Please ignore my last point.",
    "Strike that from the record.",
    "That was nonsense, sorry.",
    "Wow, that came out garbled.",
    "I'm not making sense, let me fix it.",
    "Yikes, that was gibberish.",
    "Oops, I wrote nonsense there.",
    "Hmm, that answer went off the rails.",
    "I went completely off script.",
    "I ended up talking about history instead.",
    "For some reason I started on a different subject.",
    "I don't know where that came from.",
    "Not sure what that was about.",
    "That was random, sorry.",
    "I let myself get distracted.",
    "My focus slipped there.",
    "I've been rambling.",
    "I went off on a digression.",
    "Bit of a detour there, sorry.",
    "Let me rein this in.",
    "Let me pull this back to the topic.",
    "I should answer what was actually asked.",
    "To get to your real question:",
    "Now, to what you actually asked:",
    "Coming back to your request:",
    "Let me restart my explanation.",
    "Let me have another try.",
    "On reflection, that was wrong.",
    "Thinking again, that doesn't fit.",
    "Correcting myself:",
    "Let me fix my mistake.",
)

META_NEUTRAL: tuple[str, ...] = (
    "Here is how to do it.",
    "Let me explain step by step.",
    "I hope this helps!",
    "To sum up, it is quite simple.",
    "In short, practice makes it easy.",
    "Let me break it down for you.",
    "Here's a simple method.",
    "Good question!",
    "Great question, and a common one.",
    "Sure, I can help with that.",
    "Of course!",
    "Below are the main steps.",
    "Let me know if you need more detail.",
    "Feel free to ask follow-up questions.",
    "That's all there is to it.",
    "In summary:",
    "Step one:",
    "First of all,",
    "Here's what you need:",
    "As mentioned above, keep it simple.",
    "Let me add one more tip.",
    "One more thing to keep in mind:",
    "To be clear, this works for most cases.",
    "I'll keep this brief.",
    "Let me give you an example.",
    "For example:",
    "Note that results may vary.",
    "Happy cooking!",
    "Good luck with your project!",
    "Hope that answers your question.",
    "Let's get started.",
    "Here are the details.",
    "Now for the next step.",
    "Next, let me explain the second part.",
    "Let me explain why this matters.",
    "That's the most important part.",
    "This part is easy to get wrong.",
    "Now you know the basics.",
    "Let me mention a safety point.",
    "I recommend taking your time here.",
    "I find this method the most reliable.",
    "You might be wondering why.",
    "Don't worry, it gets easier.",
    "Think of it like a recipe.",
    "Let's look at an example together.",
)

ORDINARY: tuple[str, ...] = (
    "Wait for the paint to dry before adding a second coat.",
    "Wait until the oil shimmers before adding the onions.",
    "If the seam puckers, unpick it and start over.",
    "If the dough tears, roll it into a ball and try again.",
    "Repeat the rinse again until the water runs clear.",
    "Don't worry if you make a mistake; you can erase it.",
    "Sorry to say, there is no shortcut for this step.",
    "Go back to step two and check the seal.",
    "Focus the light on the centre of the board.",
    "Turn it over and do the same on the other side.",
    "If the glue fails, scrape it off and start again.",
    "Check your answer again by substituting it back.",
    "Hold on to the rail while you climb the ladder.",
    "Wait a few seconds, then press the button again.",
    "A common mistake is adding too much water.",
    "If you get lost, return to the main road.",
    "Try again later if the website is busy.",
    "Start over with fresh eggs if they curdle.",
    "Then go back and tighten every bolt once more.",
    "Actually, most people skip this step, but it matters.",
    "Now wait for the timer to ring.",
    "Whoops happen; just wipe up spills quickly.",
    "Never mind the small lumps; they dissolve.",
    "Ignore the warning light if it blinks only once.",
    "Stay focused on one task at a time.",
    "Correct the angle if the shelf is not level.",
    "The wrong size screw will strip the hole.",
    "Don't get distracted by the extra settings.",
    "Keep your eyes on the road at all times.",
    "If that fails, unplug it and try once more.",
    "Let the mixture sit, then stir it again.",
    "Sorry to disappoint, but there is no quick fix.",
    "If the line is crooked, erase it and draw it again.",
    "Step back and look at the result from a distance.",
    "Return the tools to the box when you finish.",
    "Re-read the instructions if anything is unclear.",
    "Restart the computer once the update finishes.",
    "Repeat steps three and four for the other side.",
    "The mistake most beginners make is rushing.",
    "Ignore any small gaps; the filler covers them.",
)

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "How do you make a grilled cheese sandwich?",
        (
            "Butter two slices of bread on one side.",
            "Put cheese between the unbuttered sides.",
            "Cook it in a pan over medium heat until golden, then flip it.",
        ),
    ),
    (
        "Explain how to tie shoelaces.",
        (
            "Cross the laces and pull one under the other to make a knot.",
            "Form a loop with one lace.",
            "Wrap the other lace around the loop and push it through to make a bow.",
        ),
    ),
    (
        "How do you water a cactus?",
        (
            "Water it only when the soil is completely dry.",
            "Soak the soil thoroughly, then let it drain.",
            "In winter, water it about once a month.",
        ),
    ),
    (
        "Explain how to calculate a tip at a restaurant.",
        (
            "Take the bill total before tax.",
            "Multiply it by the tip rate, such as 0.15 or 0.2.",
            "Round the result to a convenient amount and add it to the bill.",
        ),
    ),
    (
        "How do you hang a picture frame?",
        (
            "Choose the height so the centre sits at eye level.",
            "Mark the wall where the hook goes.",
            "Drive a nail or picture hook at the mark and hang the frame.",
        ),
    ),
    (
        "Explain how to boil pasta.",
        (
            "Bring a large pot of salted water to a rolling boil.",
            "Add the pasta and stir so it does not stick.",
            "Cook it until al dente, then drain it in a colander.",
        ),
    ),
    (
        "How do you clean a computer keyboard?",
        (
            "Unplug the keyboard first.",
            "Turn it upside down and shake out crumbs.",
            "Wipe the keys with a cloth lightly dampened with alcohol.",
        ),
    ),
    (
        "Explain how to convert inches to centimetres.",
        (
            "Multiply the number of inches by 2.54.",
            "For example, 10 inches is 25.4 centimetres.",
            "Round to one decimal place for everyday use.",
        ),
    ),
    (
        "How do you write a grocery list?",
        (
            "Check what is already in the fridge and cupboards.",
            "Plan the meals for the week.",
            "Group the items by store section so shopping is quick.",
        ),
    ),
    (
        "Explain how to check a car's tyre pressure.",
        (
            "Find the recommended pressure on the sticker inside the door.",
            "Remove the valve cap and press the gauge on firmly.",
            "Read the number and add air if it is too low.",
        ),
    ),
    (
        "How do you make iced tea?",
        (
            "Brew strong tea with hot water.",
            "Let it cool and sweeten it if you like.",
            "Pour it over plenty of ice and add a slice of lemon.",
        ),
    ),
    (
        "Explain how to find the mode of a data set.",
        (
            "Count how many times each value appears.",
            "The mode is the value that appears most often.",
            "A set can have more than one mode, or none if all values are unique.",
        ),
    ),
    (
        "How do you plant tulip bulbs?",
        (
            "Plant them in autumn, before the ground freezes.",
            "Dig holes about three times as deep as the bulb is tall.",
            "Set each bulb pointy end up, cover it with soil and water it.",
        ),
    ),
    (
        "Explain how to wrap a present.",
        (
            "Measure enough paper to cover the box with a little overlap.",
            "Fold the paper around the box and tape the seam.",
            "Fold the ends into triangles, tape them down and add a ribbon.",
        ),
    ),
    (
        "How do you unclog a sink drain?",
        (
            "Remove any visible hair or debris from the drain.",
            "Use a plunger with a few firm pushes.",
            "Pour hot water with baking soda and vinegar if it is still slow.",
        ),
    ),
    (
        "Explain how to memorise a speech.",
        (
            "Break the speech into short sections.",
            "Learn one section at a time by repeating it aloud.",
            "Practise the whole speech in front of a mirror or a friend.",
        ),
    ),
    (
        "How do you calculate miles per gallon?",
        (
            "Fill the tank and reset the trip meter.",
            "Drive normally, then refill the tank and note the gallons added.",
            "Divide the miles driven by the gallons used.",
        ),
    ),
    (
        "Explain how to care for a leather jacket.",
        (
            "Wipe off dust with a soft dry cloth.",
            "Apply a leather conditioner every few months.",
            "Store it on a wide hanger away from direct sunlight.",
        ),
    ),
    (
        "How do you make a paper snowflake?",
        (
            "Fold a square sheet of paper in half diagonally, then again twice.",
            "Cut small shapes along the folded edges.",
            "Unfold the paper carefully to reveal the pattern.",
        ),
    ),
    (
        "Explain how to read an analogue clock.",
        (
            "The short hand points to the hour.",
            "The long hand points to the minutes, each number meaning five minutes.",
            "Combine the two readings to tell the time.",
        ),
    ),
    (
        "How do you prepare a room for painting?",
        (
            "Move the furniture away from the walls and cover the floor.",
            "Fill holes with filler and sand them smooth.",
            "Tape the edges of trim and windows before you paint.",
        ),
    ),
    (
        "Explain how to make a smoothie.",
        (
            "Add a cup of fruit to the blender.",
            "Pour in yogurt or milk and a handful of ice.",
            "Blend until smooth and taste it for sweetness.",
        ),
    ),
    (
        "How do you set a table for dinner?",
        (
            "Place the dinner plate in the centre of each setting.",
            "Put the fork on the left and the knife and spoon on the right.",
            "Set the glass above the knife and the napkin beside the fork.",
        ),
    ),
    (
        "Explain how to round a number to the nearest ten.",
        (
            "Look at the digit in the ones place.",
            "If it is five or more, round the tens digit up.",
            "Otherwise keep the tens digit and replace the ones digit with zero.",
        ),
    ),
)

OFF_TOPIC: tuple[tuple[str, ...], ...] = (
    (
        "The Great Wall of China stretches for thousands of kilometres.",
        "Most of the surviving wall was built during the Ming dynasty.",
    ),
    (
        "Octopuses have three hearts and blue blood.",
        "They can change colour in a fraction of a second to hide from predators.",
    ),
    ("Saturn's rings are made mostly of ice and rock.", "They are wide but only a few tens of metres thick."),
    (
        "The Renaissance began in Florence in the fourteenth century.",
        "Painters like Leonardo studied anatomy to draw the human body.",
    ),
    (
        "Glaciers carve deep U-shaped valleys as they move.",
        "Much of northern Europe was covered by ice during the last glacial period.",
    ),
    ("The violin has four strings tuned in fifths.", "Stradivari built some of the most prized violins in Cremona."),
    (
        "Lightning heats the air to temperatures hotter than the sun's surface.",
        "The rapid expansion of that air causes thunder.",
    ),
    (
        "Ancient Egyptians built pyramids as tombs for their pharaohs.",
        "The Great Pyramid of Giza was the tallest building for millennia.",
    ),
    ("Coral reefs are built by tiny animals called polyps.", "Warmer oceans cause coral bleaching."),
    (
        "The steam engine powered the industrial revolution.",
        "James Watt improved its efficiency with a separate condenser.",
    ),
    (
        "Penguins cannot fly, but they are excellent swimmers.",
        "Emperor penguins huddle together to survive the Antarctic winter.",
    ),
    ("The Silk Road linked China with the Mediterranean.", "Merchants traded silk, spices and ideas along its routes."),
    ("Mount Everest grows a few millimetres every year.", "Climbers need bottled oxygen above eight thousand metres."),
    (
        "Chess originated in India around the sixth century.",
        "The queen became the strongest piece in fifteenth-century Europe.",
    ),
    (
        "Tornadoes form when warm, moist air meets cold, dry air.",
        "The strongest ones have winds over three hundred kilometres per hour.",
    ),
    ("The Moon's gravity causes the ocean tides.", "There are two high tides roughly every day."),
    ("Vikings sailed from Scandinavia in longships.", "They reached North America around the year one thousand."),
    ("Diamonds form deep underground under high pressure.", "They are brought to the surface by volcanic eruptions."),
    (
        "The human brain has about eighty-six billion neurons.",
        "Neurons communicate through electrical and chemical signals.",
    ),
    ("Shakespeare wrote nearly forty plays.", "The Globe Theatre in London staged many of them."),
    ("Rainforests hold more than half of the world's plant and animal species.", "The Amazon spans nine countries."),
    ("Electric eels can produce shocks of several hundred volts.", "They use them to stun prey and defend themselves."),
    ("The first airplane flight lasted twelve seconds.", "The Wright brothers flew at Kitty Hawk in 1903."),
    ("Sharks have existed for over four hundred million years.", "Their skeletons are made of cartilage, not bone."),
)


def degenerate(rng: random.Random) -> str:
    """A degenerate passage: one word looped, a phrase looped, or a salad of word pieces."""
    kind = rng.randrange(3)
    if kind == 0:
        return " ".join([rng.choice(["the", "and", "lava", "very", "is", "of", "bread"])] * rng.randint(8, 20))
    if kind == 1:
        phrase = rng.choice(["the best way is the best way", "and then and then", "it is it is", "very very much so"])
        return " ".join([phrase] * rng.randint(3, 6)) + "."
    pieces = ["zor", "blen", "qua", "tix", "mop", "ral", "ven", "skee", "lum", "drap", "ork", "fen"]
    return (
        " ".join("".join(rng.choice(pieces) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(6, 14))) + "."
    )


def training_answers(
    n: int, seed: int, restarts: tuple[str, ...] = RESTARTS
) -> list[tuple[str, str, list[tuple[int, int, int]]]]:
    """Synthetic answers for the probe: (prompt, answer, [(start, end, label)] for each inserted piece).

    label 1 marks an inserted self-correction sentence, 0 an inserted ordinary, meta-neutral or
    content sentence. Shapes: on-topic (with ordinary and meta-neutral sentences mixed in),
    off-topic, degenerate, off-topic or degenerate -> restart -> on-topic (or the reverse), and
    off-topic -> restart -> off-topic or degenerate -> restart -> on-topic.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, steps = rng.choice(TOPICS)
        off = list(rng.choice(OFF_TOPIC))
        pieces: list[tuple[str, int]] = []
        shape = rng.randrange(7)
        if shape == 0:
            body = list(steps)
            body.insert(rng.randrange(len(body) + 1), rng.choice(ORDINARY))
            if rng.random() < 0.5:
                body.insert(0 if rng.random() < 0.5 else len(body), rng.choice(META_NEUTRAL))
            pieces = [(s, 0) for s in body]
        elif shape == 1:
            pieces = [(s, 0) for s in off] + ([(rng.choice(ORDINARY), 0)] if rng.random() < 0.3 else [])
        elif shape == 2:
            pieces = [(degenerate(rng), 0)]
        elif shape in (3, 4):
            first = [(degenerate(rng), 0)] if rng.random() < 0.25 else [(s, 0) for s in off[: rng.randint(1, 2)]]
            pieces = first + [(rng.choice(restarts), 1)] + [(s, 0) for s in steps[: rng.randint(1, 3)]]
        elif shape == 5:
            pieces = [(s, 0) for s in steps[: rng.randint(1, 2)]] + [(rng.choice(restarts), 1)] + [(s, 0) for s in off]
        else:
            other = rng.choice([o for o in OFF_TOPIC if o[0] != off[0]])
            middle = [(degenerate(rng), 0)] if rng.random() < 0.3 else [(s, 0) for s in other]
            pieces = (
                [(s, 0) for s in off]
                + [(rng.choice(restarts), 1)]
                + middle
                + [(rng.choice(restarts), 1)]
                + [(s, 0) for s in steps[: rng.randint(1, 3)]]
            )
        text, spans = "", []
        for s, label in pieces:
            if text:
                text += "\n\n" if rng.random() < 0.15 else " "
            spans.append((len(text), len(text) + len(s), label))
            text += s
        out.append((prompt, text, spans))
    return out
