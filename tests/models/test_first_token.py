"""The option-token rule (``promptgym.models.first_token``): options scored from the first answer
token's top log-probabilities. The rule on its own, then through the OpenAI-compatible backend
against fixed JSON answers of a loopback HTTP server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import math

import pytest

from promptgym.errors import ScoringUnavailable
from promptgym.models.base import ScoreRequest
from promptgym.models.first_token import read_options, spellings, told_apart

from integration.fake_openai_server import FakeOpenAIServer


def lp(p: float) -> float:
    return math.log(p)


# -- the rule -------------------------------------------------------------------------------------

def test_a_whole_word_beats_its_piece_and_the_leading_space_variant_adds_up():
    reading = read_options([("positive", lp(0.4)), (" positive", lp(0.1)), ("pos", lp(0.2)), ("negative", lp(0.1))],
                           ["positive", "negative"])
    assert reading.logprobs == pytest.approx((lp(0.5), lp(0.1)))
    assert reading.tokens == (("positive", " positive"), ("negative",))
    assert reading.shared == () and reading.found == 2


def test_spellings_add_or_take_off_one_leading_space():
    assert spellings("positive") == ("positive", " positive")
    assert spellings(" positive") == (" positive", "positive")  # a raw-text layout's continuation


def test_a_multi_token_option_is_read_from_its_first_piece():
    reading = read_options([("amb", lp(0.3)), ("This", lp(0.6))], ["ambivalent", "positive"])
    assert reading.logprobs[0] == pytest.approx(lp(0.3))
    assert reading.tokens[0] == ("amb",)


def test_an_option_outside_the_list_gets_the_floor_below_every_option_found():
    listed = [("This", lp(0.5)), ("The", lp(0.2)), ("positive", lp(0.1))]  # 0.2 left outside the list
    options = ["negative", "positive", "neutral"]
    reading = read_options(listed, options)
    assert reading.floor == pytest.approx(lp(0.1 / 2))  # half the lowest listed (0.1 < the 0.2 left)
    assert reading.logprobs[0] == reading.logprobs[2] == reading.floor  # both missing: they tie at the floor
    assert reading.logprobs[1] > reading.floor  # the option found ranks first, even as the lowest listed
    assert reading.tokens == ((), ("positive",), ())
    assert told_apart(reading.logprobs, (0, 1, 0), options) is None  # a tie at the floor is fine


def test_the_floor_is_half_the_mass_left_when_that_is_smaller():
    reading = read_options([("This", lp(0.6)), ("positive", lp(0.35))], ["positive", "negative"])
    assert reading.floor == pytest.approx(lp(0.05 / 2))
    assert reading.logprobs[1] == reading.floor


def test_options_that_start_with_one_token_tie_and_are_named():
    continuations = ["ambivalent", "ambiguous", "positive"]
    reading = read_options([("amb", lp(0.3)), ("positive", lp(0.5))], continuations)
    assert reading.shared == ((0, 1),)
    assert reading.logprobs[0] == reading.logprobs[1] == pytest.approx(lp(0.3))
    why = told_apart(reading.logprobs, (1, 1, 1), continuations)  # found, and tied
    assert why is not None and "'ambivalent' and 'ambiguous' begin with the same token" in why


def test_a_one_or_two_letter_piece_stands_for_no_option():
    # SmolLM2 under a prompt that elicits no label: the words are out of the list, letters are in
    listed = [("This", lp(0.5)), ("n", lp(0.01)), ("ne", lp(0.005)), ("a", lp(0.02)), ("positive", lp(0.001))]
    reading = read_options(listed, ["ambivalent", "positive", "negative", "neutral"])
    assert reading.tokens == ((), ("positive",), (), ())
    assert reading.shared == ()  # "n" would have been read for both "negative" and "neutral"
    assert read_options([("no", lp(0.3)), ("n", lp(0.2))], ["no", "yes"]).tokens == (("no",), ())  # a whole word counts


def test_case_is_kept_and_a_whitespace_token_starts_no_option():
    reading = read_options([("Positive", lp(0.7)), (" ", lp(0.2)), ("\n", lp(0.05))], ["positive", "negative"])
    assert reading.found == 0  # "Positive" is not "positive"; " " and "\n" start nothing
    why = told_apart(reading.logprobs, (0, 0), ["positive", "negative"])
    assert why is not None and "none of the options (positive, negative) is among" in why


# -- through the backend, against fixed answers over real HTTP ---------------------------------------

pytest.importorskip("openai")

from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402

SENTIMENT = [("This", lp(0.45)), ("positive", lp(0.25)), (" positive", lp(0.05)), ("Neg", lp(0.1)),
             ("negative", lp(0.08)), ("amb", lp(0.02))]
OPTIONS = ("ambivalent", "positive", "negative", "neutral")


def chat_request(text: str = "Review: fine.", prefix: str = "") -> ScoreRequest:
    return ScoreRequest(continuations=OPTIONS, messages=(("system", "Classify."), ("user", text)),
                        answer_prefix=prefix)


def score(backend: OpenAIBackend, requests: list[ScoreRequest]) -> tuple[list, list[dict]]:
    results: list = [None] * len(requests)
    faults: list[dict] = []

    def on_result(i, r):
        results[i] = r
        faults.append(dict(backend.last_faults))

    backend.score(requests, on_result)
    return results, faults


def test_a_chat_request_asks_for_the_first_token_and_reads_the_options_from_it():
    with FakeOpenAIServer(alternatives=SENTIMENT) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url)
        (scores,), _ = score(backend, [chat_request(prefix="Sentiment:")])
        (sent,) = server.received
    assert sent.path == "/v1/chat/completions"
    body = sent.body
    assert (body["logprobs"], body["top_logprobs"], body["max_tokens"], body["temperature"]) == (True, 1000, 1, 0.0)
    assert body["messages"] == [{"role": "system", "content": "Classify."},
                                {"role": "user", "content": "Review: fine.\nSentiment:"}]  # the cue in the user turn
    expected = read_options(SENTIMENT, OPTIONS)
    assert scores.logprobs == pytest.approx(expected.logprobs)
    assert scores.logprobs[1] == pytest.approx(lp(0.3))
    assert scores.logprobs[3] == pytest.approx(expected.floor)  # "neutral" is not listed ...
    assert scores.token_counts == (1, 1, 1, 0)  # ... so no token of it was read
    assert scores.prompt_tokens == 7


def test_a_server_that_lists_20_at_most_is_asked_again_in_the_same_call_and_that_is_remembered():
    with FakeOpenAIServer(alternatives=SENTIMENT, max_top_logprobs=20) as server:
        results, faults = score(OpenAIBackend("fake-model", base_url=server.base_url),
                                [chat_request(f"Review {i}.") for i in range(3)])
        asked = [r.body["top_logprobs"] for r in server.received]
        again, _ = score(OpenAIBackend("fake-model", base_url=server.base_url), [chat_request("Review 9.")])
        asked_again = [r.body["top_logprobs"] for r in server.received[len(asked):]]
    assert asked == [1000, 20, 20, 20]  # the first request alone (refused, then 20), the rest at 20
    assert all(r is not None and r.logprobs[1] == pytest.approx(lp(0.3)) for r in results + again)
    assert faults == [{}, {}, {}]  # a refused K is not a fault
    assert asked_again == [20]  # per endpoint, for the process


def test_a_raw_text_request_goes_to_completions_without_echo():
    request = ScoreRequest(continuations=(" positive", " negative"), text="Review: fine.\nSentiment:")
    listed = [(" positive", lp(0.6)), (" neutral", lp(0.3)), ("negative", lp(0.05))]
    with FakeOpenAIServer(alternatives=listed) as server:
        (scores,), _ = score(OpenAIBackend("fake-model", base_url=server.base_url), [request])
        (sent,) = server.received
    assert sent.path == "/v1/completions" and sent.body["logprobs"] == 1000 and "echo" not in sent.body
    assert sent.body["prompt"] == "Review: fine.\nSentiment:" and sent.body["max_tokens"] == 1
    assert scores.logprobs == pytest.approx((lp(0.6), lp(0.05)))  # " negative" read from "negative"


def test_a_server_without_log_probs_costs_a_batch_one_failed_call_then_one_line():
    with FakeOpenAIServer(reply="positive") as server:  # answers, but never with log-probabilities
        backend = OpenAIBackend("fake-model", base_url=server.base_url)
        results: list = [None] * 3
        faults: list = []
        with pytest.raises(ScoringUnavailable) as info:
            backend.score([chat_request(f"Review {i}.") for i in range(3)],
                          lambda i, r: (results.__setitem__(i, r), faults.append(dict(backend.last_faults))))
        sent = len(server.received)
        with pytest.raises(ScoringUnavailable):
            backend.score([chat_request(f"Review {i}.") for i in range(7, 9)], lambda i, r: None)
        sent_after = len(server.received)
    # the rest of the batch was not sent; the next batch (a run's start, in a run of its own) asks once
    # again, so that what a run records does not depend on what ran before it in the process
    assert sent == 1 and sent_after == 2
    assert results[0].token_counts == (0,) * 4 and results[1:] == [None, None]  # the one call, reported as failed
    assert faults == [{"no_logprobs": 1, "failed": 1}]
    message = str(info.value)
    assert "\n" not in message and "/chat/completions returns no log-probabilities" in message
    assert message.endswith("; use --scoring generate") and "returns no log-probabilities" in info.value.reason


def test_later_answers_without_log_probs_are_faults_retried():
    answers = iter([True, False, True])  # the second request's first answer lacks them

    def alternatives(body):
        return SENTIMENT if next(answers, True) else []

    with FakeOpenAIServer(alternatives=alternatives) as server:
        results, faults = score(OpenAIBackend("fake-model", base_url=server.base_url, max_concurrency=1),
                                [chat_request("Review 1."), chat_request("Review 2.")])
        sent = len(server.received)
    assert sent == 3 and all(r.logprobs[1] == pytest.approx(lp(0.3)) for r in results)
    assert sorted(faults, key=len) == [{}, {"no_logprobs": 1}]


def test_options_that_share_a_first_token_tie_with_one_warning_per_option_set(capsys):
    shared = ScoreRequest(continuations=("ambivalent", "ambiguous", "positive"), messages=(("user", "x"),))
    with FakeOpenAIServer(alternatives=SENTIMENT) as server:
        results, _ = score(OpenAIBackend("fake-model", base_url=server.base_url), [shared, shared, shared])
    assert all(r.logprobs[0] == r.logprobs[1] == pytest.approx(lp(0.02)) for r in results)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptgym: warning: ")
    assert "'ambivalent' and 'ambiguous' begin with the same token" in lines[0]


def test_echoed_scoring_has_an_identity_of_its_own():
    with FakeOpenAIServer() as server:
        plain = OpenAIBackend("fake-model", base_url=server.base_url)
        echo = OpenAIBackend("fake-model", base_url=server.base_url, logprob_scoring=True)
    assert echo.identity == plain.identity + "+echo"  # the same raw-text request is scored differently
    assert echo.supports_scoring and not echo.scores_first_token
    assert plain.scores_first_token and not plain.supports_scoring  # asked with a real request first
