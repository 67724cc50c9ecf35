"""Material for the judge-validation set: prompts with on-topic steps, unrelated passages, ordinary-sense sentences.

Our own sentences, written apart from the heuristic judge's calibration and probe-training text
(a test checks that no sentence is shared). Each prompt carries one sentence that uses "wait",
"again", "start over" or a similar word in its ordinary sense, on topic.
"""

from __future__ import annotations

# (prompt, on-topic steps, an on-topic sentence using restart-like words in their ordinary sense)
PROMPTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "How do you poach an egg?",
        (
            "Bring a pan of water to a gentle simmer and add a splash of vinegar.",
            "Crack the egg into a small cup and slide it into the water.",
            "Cook it for about three minutes until the white is set.",
            "Lift it out with a slotted spoon and drain it on paper.",
        ),
        "If the white spreads out too much, discard it and start over with a fresher egg.",
    ),
    (
        "Explain how to replace a light bulb.",
        (
            "Switch off the lamp and let the old bulb cool.",
            "Unscrew or unclip the old bulb carefully.",
            "Check the wattage and fitting printed on it.",
            "Fit a new bulb of the same type and switch the power back on.",
        ),
        "Wait a few minutes for a hot bulb to cool before you touch it.",
    ),
    (
        "How do you make pancakes?",
        (
            "Whisk flour, milk, eggs and a pinch of salt into a smooth batter.",
            "Heat a lightly oiled frying pan over medium heat.",
            "Pour in a ladle of batter and tilt the pan to spread it.",
            "Flip the pancake when bubbles appear and cook the other side.",
        ),
        "The first pancake often sticks, so just try again with a little more oil.",
    ),
    (
        "Explain how to calculate a percentage increase.",
        (
            "Subtract the old value from the new value.",
            "Divide that difference by the old value.",
            "Multiply the result by one hundred to get a percentage.",
            "For example, going from 50 to 60 is a twenty percent increase.",
        ),
        "Check your work again by applying the percentage to the old value.",
    ),
    (
        "How do you clean a cast iron pan?",
        (
            "Rinse the pan with hot water while it is still warm.",
            "Scrub off stuck food with a stiff brush or coarse salt.",
            "Dry it completely on the stove.",
            "Rub a thin layer of oil over the surface before storing it.",
        ),
        "If rust appears, scrub it off and season the pan again.",
    ),
    (
        "Explain how to knit a basic scarf.",
        (
            "Cast on about thirty stitches onto one needle.",
            "Knit every row with the garter stitch.",
            "Keep going until the scarf reaches the length you want.",
            "Cast off the stitches and weave in the loose ends.",
        ),
        "If you drop a stitch, unravel a few rows and start over from there.",
    ),
    (
        "How do you jump-start a car?",
        (
            "Park the working car close and switch both engines off.",
            "Connect the red cable to both positive terminals.",
            "Connect the black cable to the good battery and to bare metal on the dead car.",
            "Start the working car, then try the dead one.",
        ),
        "If it does not start, wait five minutes and try again.",
    ),
    (
        "Explain how to divide fractions.",
        (
            "Keep the first fraction as it is.",
            "Flip the second fraction upside down to get its reciprocal.",
            "Multiply the two fractions together.",
            "Simplify the answer if you can.",
        ),
        "Go back and simplify again if the numerator and denominator still share a factor.",
    ),
    (
        "How do you make a cup of hot chocolate?",
        (
            "Warm a mug of milk in a small pan without boiling it.",
            "Stir in two spoons of cocoa powder and some sugar.",
            "Whisk until it is smooth and frothy.",
            "Pour it into a mug and top it with whipped cream if you like.",
        ),
        "Wait until it stops steaming so you do not burn your tongue.",
    ),
    (
        "Explain how to plant a tree.",
        (
            "Dig a hole twice as wide as the root ball.",
            "Loosen the roots gently and set the tree in the hole.",
            "Fill the hole with soil and press it down firmly.",
            "Water the tree deeply and add mulch around the base.",
        ),
        "If the tree leans, lift it out and set it in again more carefully.",
    ),
    (
        "How do you write a haiku?",
        (
            "A haiku has three lines.",
            "The lines have five, seven and five syllables.",
            "It usually describes a moment in nature.",
            "Count the syllables on your fingers as you draft each line.",
        ),
        "If a line has too many syllables, cross it out and start over.",
    ),
    (
        "Explain how to use a fire extinguisher.",
        (
            "Pull the safety pin out of the handle.",
            "Aim the nozzle at the base of the fire.",
            "Squeeze the handle to release the agent.",
            "Sweep the nozzle from side to side until the fire is out.",
        ),
        "Watch the area afterwards, because the fire may flare up again.",
    ),
    (
        "How do you build a campfire?",
        (
            "Clear a spot and ring it with stones.",
            "Pile dry tinder in the centre.",
            "Lean small kindling sticks over the tinder like a tent.",
            "Light the tinder and add larger logs as the flames grow.",
        ),
        "If the flame dies, add more tinder and light it again.",
    ),
    (
        "Explain how to measure your blood pressure at home.",
        (
            "Sit quietly with your back supported for five minutes.",
            "Wrap the cuff around your bare upper arm at heart level.",
            "Press start and stay still while the cuff inflates.",
            "Write down both numbers the monitor shows.",
        ),
        "Wait one minute and take a second reading to compare.",
    ),
    (
        "How do you make a paper boat?",
        (
            "Fold a rectangular sheet of paper in half from top to bottom.",
            "Fold the top corners down to the centre to make a triangle.",
            "Fold the bottom strips up on both sides.",
            "Open the middle and flatten it into a square, then pull the sides apart.",
        ),
        "If a fold goes crooked, flatten the sheet and fold it again.",
    ),
    (
        "Explain how to calculate the volume of a box.",
        (
            "Measure the length, width and height of the box.",
            "Use the same unit for all three measurements.",
            "Multiply the three numbers together.",
            "A box of 2 by 3 by 4 centimetres holds 24 cubic centimetres.",
        ),
        "Measure each side again if the numbers look wrong.",
    ),
    (
        "How do you descale a kettle?",
        (
            "Fill the kettle halfway with equal parts water and white vinegar.",
            "Bring it to the boil and leave it for an hour.",
            "Pour the solution away and rinse the kettle well.",
            "Boil fresh water once and discard it to remove any taste.",
        ),
        "For heavy scale, repeat the whole process again.",
    ),
    (
        "Explain how to do a push-up.",
        (
            "Place your hands slightly wider than your shoulders.",
            "Keep your body straight from head to heels.",
            "Lower your chest until it nearly touches the floor.",
            "Push back up to the starting position.",
        ),
        "Rest, then do the set again when your breathing slows.",
    ),
    (
        "How do you make guacamole?",
        (
            "Halve two ripe avocados and scoop the flesh into a bowl.",
            "Mash it with a fork, leaving some lumps.",
            "Stir in lime juice, chopped onion, coriander and salt.",
            "Taste it and adjust the seasoning.",
        ),
        "Wait before adding more salt, since the flavour develops as it sits.",
    ),
    (
        "Explain how to back into a parking space.",
        (
            "Drive just past the space and stop.",
            "Check your mirrors and over your shoulder.",
            "Reverse slowly while turning the wheel towards the space.",
            "Straighten the wheels as the car lines up.",
        ),
        "If you end up crooked, pull forward and start over.",
    ),
    (
        "How do you remove a splinter?",
        (
            "Wash your hands and the skin around the splinter.",
            "Sterilise a pair of tweezers with alcohol.",
            "Grip the end of the splinter and pull it out at the same angle it went in.",
            "Clean the spot and cover it with a plaster.",
        ),
        "If you cannot grab it, soak the skin in warm water and try again.",
    ),
    (
        "Explain how to convert kilograms to pounds.",
        (
            "Multiply the number of kilograms by 2.2046.",
            "For a rough estimate, double it and add ten percent.",
            "Seventy kilograms is about 154 pounds.",
            "Round the answer to a sensible number of digits.",
        ),
        "To go back again from pounds, divide by the same factor.",
    ),
    (
        "How do you make a bed with hospital corners?",
        (
            "Spread the flat sheet evenly over the mattress.",
            "Tuck the sheet under the foot of the mattress.",
            "Lift the side edge up to form a diagonal fold and tuck the hanging part under.",
            "Drop the fold down and tuck it in neatly.",
        ),
        "If the corner looks loose, pull it out and do it again.",
    ),
    (
        "Explain how to read a map scale.",
        (
            "Find the scale bar or ratio in the map legend.",
            "Measure the distance between two points with a ruler.",
            "Compare that length with the scale bar.",
            "Multiply by the ratio to get the real distance.",
        ),
        "Measure the route again along the curves for a better estimate.",
    ),
    (
        "How do you start a sourdough starter?",
        (
            "Mix equal weights of flour and water in a clean jar.",
            "Cover it loosely and leave it at room temperature.",
            "Discard half and feed it with fresh flour and water every day.",
            "It is ready when it doubles within a few hours of feeding.",
        ),
        "If it smells off or grows mould, throw it out and start over.",
    ),
    (
        "Explain how to clean eyeglasses.",
        (
            "Rinse the lenses under lukewarm water.",
            "Rub a drop of dish soap over both sides of the lenses.",
            "Rinse them again thoroughly.",
            "Dry them with a clean microfibre cloth.",
        ),
        "Hold them up to the light and wipe again if you still see smudges.",
    ),
    (
        "How do you teach a child to ride a bike?",
        (
            "Lower the seat so both feet reach the ground.",
            "Let the child push along with their feet to practise balance.",
            "Hold the back of the seat while they start pedalling.",
            "Let go for short stretches as their balance improves.",
        ),
        "When they wobble and stop, encourage them to get back on and try again.",
    ),
    (
        "Explain how to calculate your body mass index.",
        (
            "Measure your weight in kilograms.",
            "Measure your height in metres.",
            "Divide your weight by the square of your height.",
            "A result between 18.5 and 25 is in the normal range.",
        ),
        "Weigh yourself again at the same time of day for a consistent figure.",
    ),
    (
        "How do you seal a drafty window?",
        (
            "Find the gaps by holding a candle near the frame on a windy day.",
            "Clean and dry the frame.",
            "Apply weatherstripping tape along the sash.",
            "Run a bead of caulk along fixed gaps and smooth it.",
        ),
        "Wait for the caulk to cure for a day before painting over it.",
    ),
    (
        "Explain how to make a budget spreadsheet.",
        (
            "Create columns for category, planned amount and actual amount.",
            "List your income at the top.",
            "Add a row for each expense category.",
            "Use a formula to subtract total expenses from income.",
        ),
        "At the end of each month, copy the sheet and start over with fresh numbers.",
    ),
)

UNRELATED: tuple[tuple[str, ...], ...] = (
    (
        "The Eiffel Tower was built for the 1889 World's Fair in Paris.",
        "It was once the tallest structure in the world.",
        "Its iron frame is repainted every few years.",
    ),
    (
        "Hummingbirds beat their wings up to eighty times per second.",
        "They can hover and even fly backwards.",
        "Their hearts race at over a thousand beats a minute.",
    ),
    (
        "Jupiter is the largest planet in our solar system.",
        "Its Great Red Spot is a storm larger than Earth.",
        "It has dozens of known moons.",
    ),
    (
        "The Byzantine Empire lasted for about a thousand years.",
        "Its capital Constantinople was protected by massive walls.",
        "It fell to the Ottomans in 1453.",
    ),
    (
        "Earthquakes happen when tectonic plates slip past each other.",
        "The energy travels as seismic waves.",
        "Seismographs record the shaking.",
    ),
    (
        "The piano was invented in Italy around 1700.",
        "Its hammers strike strings when keys are pressed.",
        "Mozart and Beethoven wrote many works for it.",
    ),
    (
        "Auroras appear when charged particles from the sun hit the atmosphere.",
        "They glow green and purple near the poles.",
        "They are strongest during solar storms.",
    ),
    (
        "Mayan cities had stepped pyramids and ball courts.",
        "The Maya developed a detailed calendar.",
        "They also wrote in hieroglyphs.",
    ),
    (
        "Jellyfish have no brain, heart or bones.",
        "Some species glow in the dark.",
        "They have drifted through the oceans for hundreds of millions of years.",
    ),
    (
        "The printing of paper money began in China.",
        "Song dynasty merchants used notes to avoid carrying heavy coins.",
        "Europe adopted banknotes centuries later.",
    ),
    (
        "Camels store fat, not water, in their humps.",
        "They can drink a hundred litres in minutes.",
        "Their wide feet keep them from sinking in sand.",
    ),
    (
        "The Apollo 11 mission landed on the Moon in 1969.",
        "Neil Armstrong was the first person to walk there.",
        "The crew brought back rock samples.",
    ),
    (
        "Bamboo is one of the fastest-growing plants on Earth.",
        "Some species grow nearly a metre a day.",
        "Pandas eat it almost exclusively.",
    ),
    (
        "The Sahara is the largest hot desert in the world.",
        "It covers much of North Africa.",
        "Thousands of years ago it was green and full of lakes.",
    ),
    (
        "Impressionist painters worked outdoors to catch changing light.",
        "Monet painted the same haystacks again and again in different seasons.",
        "Critics first mocked the style.",
    ),
    (
        "Owls can turn their heads about two hundred and seventy degrees.",
        "Their feathers let them fly almost silently.",
        "Most of them hunt at night.",
    ),
    (
        "The Panama Canal connects the Atlantic and Pacific Oceans.",
        "Ships are lifted by a series of locks.",
        "It opened in 1914.",
    ),
    (
        "Neutron stars are the collapsed cores of massive stars.",
        "A teaspoon of their matter would weigh billions of tonnes.",
        "Some spin hundreds of times per second.",
    ),
    (
        "The Olympic Games began in ancient Greece.",
        "Athletes competed in running, wrestling and chariot racing.",
        "The modern games started in Athens in 1896.",
    ),
    (
        "Tea was first drunk in China thousands of years ago.",
        "Legend says leaves blew into an emperor's boiling water.",
        "Trade later carried it to Europe.",
    ),
)
