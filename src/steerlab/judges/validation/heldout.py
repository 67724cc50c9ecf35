"""Held-out restart phrasings for judge validation: natural self-corrections no judge here was written or trained on.

Nothing in the judges' code reads this module. A test checks that no phrasing is caught by the
restart phrase list, that none shares a 4-word sequence with the restart probe's training sentences
(`judges.restart_data`), and it reports the nearest training sentence by embedding for each.
"""

HELDOUT_RESTARTS: tuple[str, ...] = (
    "I realize I went on a tangent.",
    "Whoops, wrong topic.",
    "Hmm, I've wandered away from what you asked.",
    "My bad, that part had nothing to do with it.",
    "Okay, scrap all of that.",
    "Sorry, I'm mixing things up.",
    "That was a strange digression, forgive me.",
    "I veered off course there.",
    "Oh, I completely misunderstood you.",
    "Let me steer back to your actual question.",
    "Uh, that's unrelated to what you need.",
    "I drifted into a different subject entirely.",
    "Apologies, my thoughts ran away with me.",
    "That doesn't answer anything you asked.",
    "Right, let me try that once more, properly.",
    "I should have stayed with the original topic.",
    "Oops, I'm talking nonsense.",
    "Let me reset and give you a real answer.",
    "Honestly, I lost my train of thought.",
    "Hang on, I'm off in the weeds.",
    "Sorry about the confusion; here is the actual method.",
    "Er, none of that is what you wanted.",
    "I went down a rabbit hole there.",
    "Excuse the ramble.",
    "Ah, I've confused your question with something else.",
    "This isn't the subject at hand, so let me fix that.",
    "Oh wow, I really went astray with that answer.",
    "Please disregard the previous paragraph.",
    "I'm answering a question you never asked.",
    "Hmm, that's me getting distracted again.",
    "Let me restate this correctly.",
    "I derailed a little; here is the proper explanation.",
    "Ok, deep breath, your question was about something else.",
    "That went sideways, sorry.",
    "Wrong subject, my mistake.",
    "Wait, why am I describing that?",
    "I misspoke entirely just now.",
    "Let me return to the point you raised.",
    "Drat, I wandered again.",
    "Getting myself back on track now.",
)
