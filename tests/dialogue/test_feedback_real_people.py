"""The feedback decoder on failure classes seen in real replies (issue 19): each test names a class of reply, worded
here (not copied from the real set's dev or blind rows), that the rules misread before."""

from __future__ import annotations

import pytest

from ilearn.dialogue.feedback import Exchange, LexicalFeedbackDecoder, extract_correction
from ilearn.types import Label


def judge(answer: str, reaction: str, question: str = "") -> tuple[Label, str | None]:
    """The decoder as shipped: rules and learned check."""
    fb = LexicalFeedbackDecoder().judge(Exchange(question, answer, reaction))
    return fb.label, fb.correction


def rules(answer: str, reaction: str, question: str = "") -> tuple[Label, str | None]:
    """The rules alone (the learned check may still abstain on what they decide)."""
    fb = LexicalFeedbackDecoder(check=None).rules(Exchange(question, answer, reaction))
    return fb.label, fb.correction


@pytest.mark.parametrize("answer", ["Are you still in software development?", "I meant the student parking",
                                    "Did you want the pendant?"])
def test_a_word_ending_in_nt_is_no_negation(answer):
    # a "no" that agrees with a negative answer needs a real negation in it: "development" / "meant" are none
    assert rules(answer, "no, not anymore")[0] == Label.NEGATIVE
    assert rules("I don't think he'll come.", "no, not a chance")[0] == Label.POSITIVE
    assert rules("That isnt fair.", "nope, not fair at all")[0] == Label.POSITIVE


@pytest.mark.parametrize("answer, reaction", [
    ("Did anyone call you that?", "no one ever called me that?"),  # "no one" is a pronoun, not a rejection
    ("We lost every game this year.", "That's not a great way to finish a season."),  # an opinion on the topic
    ("I'd lose my phone before my keys.", "It's not a big deal either way."),
    ("Is it Sam who keeps doing that?", "I mean probably, hard to say"),  # "I mean" as a filler
    ("Engineering is a hard program though.", "nah you'll be fine"),  # encouragement
    ("Engineering is a hard program though.", "no you can totally do it"),
    ("Thanks a lot for the help!", "sure dude, any time"),  # answering thanks
    ("Thanks a lot for the help!", "you're very welcome"),
    ("I have to head out.", "good night!"),  # a closing, not approval
    ("It is a lynx.", "no joke?"),
])
def test_replies_that_do_not_reject_the_answer(answer, reaction):
    assert judge(answer, reaction) == (Label.NEUTRAL, None)


@pytest.mark.parametrize("answer, reaction", [
    ("Losing your passport abroad would be the worst.", "yeah that would be awful"),  # agreeing about the topic
    ("I never liked crowded malls much.", "nope, me either"),  # a "no" that agrees
    ("I need to study harder than the rest to keep up.", "no, it does make sense"),
    ("Studying abroad is expensive.", "no, that's true"),
    ("That class was impossible, honestly brutal!", "No kidding."),  # agreeing with an opinion
    ("That exam was so hard.", "haha no joke"),
    ("I play bass in a jazz band.", "That's cool, how long have you played?"),  # approval, then moving on
    ("I just got back from Peru.", "nice! maybe I should go too"),
    ("I would go to Hogwarts.", "haha yeah I think that works"),
    ("My favourite film is Alien.", "Oh I love that one!"),
])
def test_replies_that_accept_the_answer(answer, reaction):
    assert rules(answer, reaction) == (Label.POSITIVE, None)


@pytest.mark.parametrize("answer, reaction", [
    ("It is paracetamol.", "nope, good guess though"),  # a compliment on a wrong guess
    ("It is paracetamol.", "terrible answer"),
    ("It is paracetamol.", "It's not a good answer"),
    ("It is paracetamol.", "I mean the other bottle"),
])
def test_rejections_still_read_as_negative(answer, reaction):
    assert judge(answer, reaction)[0] == Label.NEGATIVE


def test_no_kidding_after_news_stays_surprise():
    assert judge("It is a lynx.", "no kidding")[0] == Label.NEUTRAL


@pytest.mark.parametrize("reaction, correction", [
    ("no im actually majoring in chemistry", "chemistry"),  # what one studies or does
    ("nope, I'm going into nursing", "nursing"),
    ("No, but I'm a history minor", "history minor"),  # "but" before the person
    ("No, we call it a lift", "lift"),  # what someone says or calls it
    ("nah they said 5 grand", "5 grand"),
    ("No, it's called Aspirin Plus", "Aspirin Plus"),
    ("No, not the one on Netflix. Just the first film.", "first film"),  # a later sentence that is only the answer
    # "for" is kept: "No, it's for allergies." teaches the use "for allergies" (tests/learning/test_learns.py)
    ("No for biology and physics", "for biology and physics"),
])
def test_corrections_named_in_real_wordings(reaction, correction):
    assert extract_correction(reaction, "It is aspirin.") == correction
    assert judge("It is aspirin.", reaction) == (Label.NEGATIVE, correction)


@pytest.mark.parametrize("reaction", [
    "No, after that",
    "nope, before then",  # a pro-form points back, it names nothing
    "No not yet",
    "Nah, gotta try harder next time",  # a clause with a verb
    "no, I want to go home",
    "nope, need more sleep",
])
def test_no_correction_from_pro_forms_or_clauses(reaction):
    assert extract_correction(reaction, "It is aspirin.") is None


@pytest.mark.parametrize("answer, reaction", [
    ("Hey! Have you ever been to Iceland", "no I haven't, is it nice?"),  # "no" answers the answer's own question
    ("Did you ever try the new ramen place?", "nope, never"),
    ("I do weekend shifts.", "Fun. Where at? If that's not too nosy"),  # an opinion after an intensifier
    ("Whats up with you?", "not much"),  # "not much" / "not sure" answer, they do not reject
    ("I think it's spelled with two ls", "not sure about that, but ok"),
    ("Where do you ride?", "Close by, mostly the canyon trails"),  # "close by" is a place, not partial acceptance
])
def test_no_and_not_that_answer_rather_than_reject(answer, reaction):
    assert judge(answer, reaction)[0] != Label.NEGATIVE


@pytest.mark.parametrize("reaction", ["no just curious", "No! A tragedy.", "It's the best"])
def test_states_and_evaluations_are_no_correction(reaction):
    assert extract_correction(reaction, "It is aspirin.") is None


@pytest.mark.parametrize("answer, reaction", [("I finish in two years.", "Not bad at all!"), ("Just got a new bike.", "oh dope")])
def test_slang_and_litotes_approve(answer, reaction):
    assert rules(answer, reaction)[0] == Label.POSITIVE


def test_a_guess_about_the_listener_is_still_rejected():
    assert judge("Are you a freshman?", "no, I'm a senior") == (Label.NEGATIVE, "senior")
    assert judge("It is aspirin.", "close, but it's ibuprofen") == (Label.NEGATIVE, "ibuprofen")


@pytest.mark.parametrize("answer, reaction", [("Why do you ask?", "nope, just wondering"),
                                              ("They sold out before I got there.", "No! What a shame.")])
def test_a_no_that_explains_or_sympathises(answer, reaction):
    assert judge(answer, reaction) == (Label.NEUTRAL, None)


# Third pass (2026-12-07): the classes of a fresh draw (65 rows no decoder had seen; docs/reactions.md "Third pass").

@pytest.mark.parametrize("answer, reaction", [
    ("I mostly listen to synthwave, have you heard of it?", "no I haven't but it sounds really cool"),
    ("We could build a treehouse out of pallets", "Nope. Ha, that would be awesome though"),
])
def test_approval_after_a_no_to_something_else(answer, reaction):
    assert rules(answer, reaction) == (Label.POSITIVE, None)


def test_approving_the_attempt_still_rejects():
    assert judge("It is aspirin.", "nope, nice try though")[0] == Label.NEGATIVE
    assert judge("It is aspirin.", "no, it's ibuprofen, sounds good otherwise")[0] == Label.NEGATIVE


@pytest.mark.parametrize("answer, reaction", [("Rent is about 600 a month", "thats not to bad"),
                                              ("The bus takes twenty minutes.", "It's not too bad")])
def test_not_too_bad_approves(answer, reaction):
    assert rules(answer, reaction) == (Label.POSITIVE, None)
    assert rules("I got the flu this week.", "oh that's too bad")[0] == Label.NEUTRAL  # sympathy


def test_a_question_opening_with_no_is_no_rejection():
    assert judge("We grilled burgers all afternoon.", "No hot dogs or veggie skewers?") == (Label.NEUTRAL, None)
    assert judge("Is it Tuesday?", "not the weekend already?") == (Label.NEUTRAL, None)
    # a "no" before a pronoun's statement still answers the question it ends with
    assert judge("Are you a student here?", "No i am a nurse and you?")[0] == Label.NEGATIVE


@pytest.mark.parametrize("reaction", ["Nah, never even heard of that one.", "no I haven't heard of them"])
def test_not_knowing_what_the_answer_named(reaction):
    assert judge("My favourite band is Khruangbin", reaction) == (Label.NEUTRAL, None)


def test_not_me_is_a_pronoun():
    assert judge("Everyone in my class plays chess better than I do.", "Not me lol.")[0] != Label.NEGATIVE


def test_a_no_that_declines_an_offer():
    answer = "I have to go, but leave the chat open if you want"
    assert judge(answer, "nah I have to leave too, I'll close it") == (Label.NEUTRAL, None)
    # with a correction it is a rejection, offer or not; a bare "no" stays one too
    assert judge("It is ibuprofen. Would you like the dose?", "no, it's aspirin") == (Label.NEGATIVE, "aspirin")
    assert judge("It is ibuprofen. Would you like the dose?", "no")[0] == Label.NEGATIVE


def test_like_is_no_correction():
    assert extract_correction("it's like... the opposite of flying", "I can fly.") is None


@pytest.mark.parametrize("reaction", ["Oh that is true", "Totally!", "mine too!", "that's so fun!",
                                      "i'm really glad to hear that", "ok yeah sure, a short one"])
def test_plain_agreement_and_approval(reaction):
    assert rules("It depends on the size of the group.", reaction)[0] == Label.POSITIVE


@pytest.mark.parametrize("answer, reaction", [("I like hiking and baking. What about you?", "i like the quiet of the library"),
                                              ("Mostly jazz, wbu?", "I really love the old punk records")])
def test_own_liking_answers_the_answers_question(answer, reaction):
    assert judge(answer, reaction)[0] == Label.NEUTRAL
    assert rules("I got the tickets for Friday.", "I love that!")[0] == Label.POSITIVE  # approval stays


@pytest.mark.parametrize("reaction", ["heck yes", "I feel you on that", "Congrats!!", "there you go",
                                      "same story for me", "sounds like a plan"])
def test_more_plain_approval(reaction):
    assert rules("I finally finished my thesis.", reaction)[0] == Label.POSITIVE


# Fifth pass (2026-12-07): a draw of 53 rows no decoder had seen (docs/reactions.md "Fifth pass"), new words below.
@pytest.mark.parametrize("reaction", ["such as what?", "Like what?!"])
def test_asking_for_examples_is_no_confusion(reaction):
    assert judge("I cook a lot of different things.", reaction)[0] == Label.NEUTRAL
    assert judge("It is ibuprofen.", "sorry, what?")[0] == Label.NEGATIVE  # confusion at the answer stays


@pytest.mark.parametrize("answer", ["Finals week has been so draining", "My car broke down again, it sucks"])
def test_a_groan_at_a_complaint_is_sympathy(answer):
    assert judge(answer, "ugh, that's the worst")[0] == Label.NEUTRAL
    assert judge("It is ibuprofen.", "ugh")[0] == Label.NEGATIVE  # at an answer that complains of nothing


@pytest.mark.parametrize("reaction", ["now it makes a lot more sense", "sounds super fun", "that sounds delicious",
                                      "thats what im talking about!"])
def test_approval_in_other_words(reaction):
    assert rules("We went to the coast for the weekend.", reaction)[0] == Label.POSITIVE
    assert rules("It is ibuprofen.", "that doesn't make sense")[0] != Label.POSITIVE


# Sixth pass (2026-12-07, twelfth session): a draw of 51 rows no decoder had seen (docs/reactions.md "Sixth pass"),
# new words below; each test fails on the code before it (1c08564).
@pytest.mark.parametrize("reaction", ["Wow, that's profound", "that is really insightful!", "That is deep, never saw it that way",
                                      "I loved that show"])
def test_praising_the_answers_insight_is_approval(reaction):
    # an evaluation of what the answer said ("that's profound") names no correction
    assert judge("Courage is being scared and going anyway, like the captain in that show.", reaction) == \
        (Label.POSITIVE, None)
    assert judge("It is a hammer.", "that's a wrench") == (Label.NEGATIVE, "wrench")  # a name stays a correction
    assert judge("Mostly jazz, wbu?", "I loved the old punk records")[0] == Label.NEUTRAL  # own liking, asked back


@pytest.mark.parametrize("answer, reaction", [
    ("Mesa Verde? where is that? Sounds familiar", "it's down in the corner of Colorado, lots of cliff houses"),
    ("Never played it. What's that?", "It's a card game from Japan, kind of like poker"),
    ("who is he? I only know the first movie", "that's the guy who wrote the soundtrack"),
])
def test_a_statement_answering_the_answers_own_question(answer, reaction):
    # the answer asked what / where / who the thing the listener named is: a reply telling it corrects nothing
    assert judge(answer, reaction) == (Label.NEUTRAL, None)
    # a rejection still rejects, and an answer that asks nothing is still corrected
    assert judge(answer, "no, it's a board game")[0] == Label.NEGATIVE
    assert judge("It is a board game.", "it's a card game") == (Label.NEGATIVE, "card game")


@pytest.mark.parametrize("answer, reaction", [("I've been waiting for ages.", "waiting for what?"),
                                              ("Honestly I'm so nervous about it.", "nervous about what?"),
                                              ("It used to be different.", "different from what?")])
def test_what_after_a_preposition_asks_to_complete_the_answer(answer, reaction):
    assert judge(answer, reaction) == (Label.NEUTRAL, None)
    assert judge("It is an axolotl.", "it's a what?")[0] == Label.NEGATIVE  # disbelief at the answer stays


@pytest.mark.parametrize("reaction", ["sweet I might have to try that place", "nice nice how long did it take?",
                                      "awesome Ill probably stop by", "sweet sweet how early do you start?"])
def test_an_approval_word_then_a_clause(reaction):
    # the approval opens the reply; what follows (a plan, a hedge about oneself, a question) does not undo it
    assert judge("I got an internship at the new bakery downtown.", reaction) == (Label.POSITIVE, None)
    assert judge("I got an internship at the new bakery downtown.", "cool I guess")[0] == Label.NEUTRAL


@pytest.mark.parametrize("reaction", ["yasss", "lol yessss", "Yasss queen"])
def test_a_drawn_out_yes_agrees(reaction):
    assert judge("I'd go to that concert in a heartbeat.", reaction) == (Label.POSITIVE, None)


@pytest.mark.parametrize("reaction", ["I agree, it may not be enough", "I agree it may not catch on",
                                      "I agree, hard to pull off, though not a dumb plan",
                                      "I agree, though not a cure-all by any means"])
def test_an_opening_i_agree_is_not_undone_by_a_reservation(reaction):
    # neither the learned check nor a "not" in the reservation undoes it (as the check leaves "thanks" to the rules)
    assert judge("A sugar tax would help a bit, even if not much.", reaction) == (Label.POSITIVE, None)
    # it still rejects when it says what is wrong or names a correction
    assert judge("It is a hammer.", "I agree it's a tool, but it's not right")[0] == Label.NEGATIVE
    assert judge("It is a hammer.", "I agree it's a tool, but it's actually a mallet") == (Label.NEGATIVE, "mallet")
