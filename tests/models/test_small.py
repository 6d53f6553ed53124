"""The embedded default model `small`: EfficientNet-Lite0 + SmolLM2-135M, about 5 s to load once the language model is
cached (its first load de-quantises the GGUF file, about 30 s; `ilearn.models.small.cache_root`)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ilearn.config import ModelConfig
from ilearn.models import load_model
from ilearn.models.base import Message, VisionLanguageModel

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small():
    return load_model(ModelConfig(backend="small"))


def easyvqa_colour_item():
    easy_vqa = pytest.importorskip("easy_vqa")
    questions, answers, image_ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    i = next(i for i, q in enumerate(questions) if q == "what color is the shape?")
    return questions[i], answers[i], Image.open(paths[image_ids[i]]).convert("RGB")


def test_small_answers_an_easyvqa_colour_question(small):
    assert isinstance(small, VisionLanguageModel) and small.name == "small"
    question, answer, image = easyvqa_colour_item()
    reply = small.generate([Message("user", question, image)], max_new_tokens=6)
    assert reply.text.lower().split()[0].strip(".,!") == answer
    assert reply.prompt_tokens < 60  # short system prompt + 9 image tokens + the question


def test_small_scores_the_right_colour_highest(small):
    question, answer, image = easyvqa_colour_item()
    colours = ["red", "green", "blue", "yellow", "teal", "brown", "gray", "black"]
    scores = small.score([Message("user", question, image)], colours)
    assert colours[scores.index(max(scores))] == answer


def test_small_sees_the_image(small):
    red = Image.new("RGB", (64, 64), (255, 255, 255))
    red.paste((220, 30, 30), (16, 16, 48, 48))
    blue = Image.new("RGB", (64, 64), (255, 255, 255))
    blue.paste((30, 30, 220), (16, 16, 48, 48))
    q = "what color is the shape?"
    a = small.score([Message("user", q, red)], ["red", "blue"])
    b = small.score([Message("user", q, blue)], ["red", "blue"])
    assert a[0] > a[1] and b[1] > b[0]


def test_small_carries_the_shipped_instance_branch_silent_until_trained(small):
    from ilearn.data.bottles import BOTTLES, render_view
    from ilearn.models.instance import InstanceImageEmbedder, prepare

    model = small.model
    assert not model.projector.instance[-1].weight.any() and not model.projector.instance[-1].bias.any()
    image = render_view(BOTTLES[0], 5)
    pixels = small.processor.image_processor([image], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ours = model.vision.instance(pixels)[0].numpy()
    theirs = InstanceImageEmbedder().embed_prepared(prepare(image.resize((224, 224), Image.Resampling.BICUBIC))[None])[0]
    assert float(ours @ theirs) > 0.95  # the retrieval network, on the model's own pixels


def test_small_is_built_the_same_in_every_process_without_touching_the_callers_random_state(small):
    from ilearn.models.small import build_small

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again, _ = build_small(ModelConfig(backend="small"))
    assert torch.equal(torch.rand(3), expected)  # the caller's random state is untouched
    ours, theirs = small.model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # the parts drawn at random included
