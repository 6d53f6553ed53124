"""The composed VLM classes, exercised through the `tiny` backend (random weights, built in about a second)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from ilearn.config import ModelConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.models import load_model
from ilearn.models.base import Generation, Message, VisionLanguageModel
from ilearn.models.composed import IMAGE_TOKEN, ComposedProcessor, ComposedVLM
from ilearn.models.tiny import build_tiny
from ilearn.types import answer_key

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig(backend="tiny"))


def red() -> Image.Image:
    return Image.new("RGB", (50, 40), (255, 0, 0))


def blue() -> Image.Image:
    return Image.new("RGB", (20, 70), (0, 0, 255))


def chat(question: str = "what color is the shape?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def test_tiny_builds_fast_and_deterministically():
    start = time.perf_counter()
    m1, _ = build_tiny(ModelConfig(backend="tiny", seed=3))
    assert time.perf_counter() - start < 10
    m2, _ = build_tiny(ModelConfig(backend="tiny", seed=3))
    m3, _ = build_tiny(ModelConfig(backend="tiny", seed=4))
    w1, w2, w3 = (m.projector.fc1.weight for m in (m1, m2, m3))
    assert torch.equal(w1, w2)
    assert not torch.equal(w1, w3)


def test_protocol_generate_and_score(tiny):
    assert isinstance(tiny, VisionLanguageModel)
    assert tiny.name == "tiny" and tiny.version == "base"
    g = tiny.generate([Message("user", "what color is the shape?", red())], max_new_tokens=5)
    assert isinstance(g, Generation) and isinstance(g.text, str)
    assert g.prompt_tokens > 9 and 1 <= g.completion_tokens <= 5 and g.seconds > 0
    scores = tiny.score([Message("user", "what color?", red())], ["red", "blue", "a long green thing"])
    assert len(scores) == 3 and all(s < 0 for s in scores)
    # batched scoring equals one-by-one scoring
    one = [tiny.score([Message("user", "what color?", red())], [c])[0] for c in ["red", "a long green thing"]]
    assert one == pytest.approx([scores[0], scores[2]], abs=1e-4)


def test_bad_messages_are_refused(tiny):
    with pytest.raises(InvalidInput):
        tiny.generate([])
    with pytest.raises(InvalidInput):
        tiny.generate([Message("robot", "hi")])


def test_processor_expands_image_and_pads_batches():
    model, proc = build_tiny()
    text = proc.apply_chat_template(chat(), tokenize=False, add_generation_prompt=True)
    assert text.count(IMAGE_TOKEN) == 1 and text.endswith("<|im_start|>assistant\n")
    batch = proc(text=[text, "no image, a much longer text without any picture at all"], images=[[red()], []],
                 return_tensors="pt", padding=True)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    counts = (batch["input_ids"] == proc.image_token_id).sum(dim=1).tolist()
    assert counts == [proc.num_image_tokens, 0]
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert max(lengths) == batch["input_ids"].shape[1] and min(lengths) < max(lengths)  # the short row is padded
    with pytest.raises(InvalidInput):
        proc(text=text, images=[red(), blue()])
    with pytest.raises(InvalidInput):  # placeholders without pixels
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_forward_loss_and_a_few_steps_learn():
    model, proc = build_tiny()
    text = proc.apply_chat_template(chat(), tokenize=False, add_generation_prompt=True) + "red<|im_end|>"
    batch = proc(text=text, images=red(), return_tensors="pt")
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = model(**batch, labels=batch["input_ids"]).loss
        assert torch.isfinite(loss)
        loss.backward()
        optim.step()
        optim.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_save_load_round_trip(tmp_path, tiny):
    tiny.save(tmp_path / "full")
    model = ComposedVLM.from_pretrained(tmp_path / "full")
    proc = ComposedProcessor.from_pretrained(tmp_path / "full")
    text = proc.apply_chat_template(chat(), tokenize=False, add_generation_prompt=True)
    batch = proc(text=text, images=red(), return_tensors="pt")
    with torch.inference_mode():
        a = model.eval()(**batch).logits
        b = tiny.model(**batch).logits
    assert torch.equal(a, b)
    assert proc.num_image_tokens == tiny.processor.num_image_tokens


def test_generate_returns_prompt_then_new_tokens():
    model, proc = build_tiny()
    text = proc.apply_chat_template(chat(), tokenize=False, add_generation_prompt=True)
    batch = proc(text=[text, text], images=[red(), blue()], return_tensors="pt", padding=True, padding_side="left")
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_set_weights_partial_file_and_reset(tmp_path):
    vlm = load_model(ModelConfig(backend="tiny", seed=1))
    before = vlm.score([Message("user", "what color?", red())], ["red"])[0]
    with torch.no_grad():
        vlm.model.projector.fc2.weight.mul_(3.0)
    vlm.save(tmp_path / "v1", parts=("projector",))
    changed = vlm.score([Message("user", "what color?", red())], ["red"])[0]
    vlm.reset()  # nothing loaded: reset keeps the edited weights
    vlm.set_weights(tmp_path / "v1", version="v1")
    assert vlm.version == "v1"
    assert vlm.score([Message("user", "what color?", red())], ["red"])[0] == pytest.approx(changed, abs=1e-5)
    with pytest.raises(NotFound):
        vlm.set_weights(tmp_path / "missing")
    assert before != pytest.approx(changed, abs=1e-5)


def test_peft_lora_wrap_trains_and_loads_as_adapter(tmp_path):
    peft = pytest.importorskip("peft")
    model, proc = build_tiny()
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      modules_to_save=["projector"], task_type="CAUSAL_LM"))
    names = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in names) and any("projector" in n for n in names)
    assert not any("vision" in n for n in names)
    text = proc.apply_chat_template(chat(), tokenize=False, add_generation_prompt=True) + "red<|im_end|>"
    batch = proc(text=text, images=red(), return_tensors="pt")
    optim = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        lora(**batch, labels=batch["input_ids"]).loss.backward()
        optim.step()
        optim.zero_grad()
    assert lora.generate(**batch, max_new_tokens=2, min_new_tokens=2).shape[1] == batch["input_ids"].shape[1] + 2
    lora.save_pretrained(tmp_path / "adapter")
    with torch.inference_mode():
        trained = lora(**batch).logits
    vlm = load_model(ModelConfig(backend="tiny"))
    with torch.inference_mode():
        base = vlm.model(**batch).logits
    vlm.load_adapter(tmp_path / "adapter", version="lora1")
    with torch.inference_mode():
        assert torch.allclose(vlm.model(**batch).logits, trained, atol=1e-5)
    vlm.reset()
    with torch.inference_mode():
        assert torch.allclose(vlm.model(**batch).logits, base, atol=1e-6)


def test_trl_sft_trainer_accepts_model_and_processor(tmp_path):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    model, proc = build_tiny()
    rows = [{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what color?"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "red"}]}],
             "images": [red()]}] * 4
    args = trl.SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, bf16=False,
                         gradient_checkpointing=False, report_to=[], save_strategy="no", use_cpu=True,
                         max_length=None)
    before = model.projector.fc1.weight.detach().clone()
    frozen = model.vision.net[0].weight
    frozen.requires_grad_(False)
    frozen_before = frozen.detach().clone()
    trl.SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                   processing_class=proc).train()
    assert not torch.equal(before, model.projector.fc1.weight)
    assert torch.equal(frozen_before, model.vision.net[0].weight)


def test_efficientnet_variant_round_trips(tmp_path):
    from ilearn.models.composed import ComposedConfig, make_image_processor

    tiny_model, tiny_proc = build_tiny()
    cfg = ComposedConfig(vision_type="efficientnet-lite0", vision_dim=1280, image_size=64, image_pool=2,
                         image_token_id=tiny_model.config.image_token_id, text_config=tiny_model.config.text_config)
    torch.manual_seed(0)
    model = ComposedVLM(cfg).eval()
    proc = ComposedProcessor(make_image_processor(cfg), tiny_proc.tokenizer, num_image_tokens=cfg.num_image_tokens)
    model.save_pretrained(tmp_path)
    again = ComposedVLM.from_pretrained(tmp_path).eval()
    text = proc.apply_chat_template(chat(), tokenize=False, add_generation_prompt=True)
    batch = proc(text=text, images=red(), return_tensors="pt")
    assert batch["pixel_values"].shape == (1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(**batch).logits, again(**batch).logits)


def test_weights_of_another_shape_are_refused(tiny):
    bad = {"projector.fc1.weight": torch.zeros(3, 3)}
    with pytest.raises(InvalidInput, match="shape"):
        tiny.model.load_trainable(bad)
    with pytest.raises(InvalidInput, match="unknown"):
        tiny.model.load_trainable({"nope.weight": torch.zeros(1)})


def test_align_training_order_balances_kinds_and_keeps_the_plain_shuffle():
    import random
    from collections import Counter

    from ilearn.models.align import question_kind, training_order

    answers = ["yes"] * 70 + ["no"] * 10 + ["circle"] * 10 + ["red"] * 5 + ["teal"] * 5
    order = training_order(answers, 90, seed=0, balance=True)
    kinds = Counter(question_kind(answers[i]) for i in order)
    assert kinds == {"colour": 30, "shape": 30, "yes/no": 30}
    assert len(set(order[:30:3])) == 10  # each kind is cycled without repeats until exhausted
    plain = list(range(len(answers)))
    random.Random(0).shuffle(plain)
    assert training_order(answers, 150, seed=0, balance=False) == (plain * 2)[:150]


def test_generate_avoids_rejected_replies(tiny):
    messages = [Message("user", "what color is the shape?", red())]
    greedy = tiny.generate(messages, max_new_tokens=4).text
    other = tiny.generate(messages, max_new_tokens=4, avoid=[greedy]).text
    assert other and answer_key(other) != answer_key(greedy)
    assert tiny.generate(messages, max_new_tokens=4, avoid=["something else"]).text == greedy


def _instance_model(instance_dim: int = 128) -> tuple[ComposedVLM, ComposedProcessor]:
    from ilearn.models.composed import ComposedConfig, make_image_processor

    tiny_model, tiny_proc = build_tiny()
    cfg = ComposedConfig(vision_type="efficientnet-lite0", vision_dim=1280, image_size=96, image_pool=2,
                         image_token_id=tiny_model.config.image_token_id, text_config=tiny_model.config.text_config,
                         instance_dim=instance_dim)
    torch.manual_seed(0)
    model = ComposedVLM(cfg).eval()
    return model, ComposedProcessor(make_image_processor(cfg), tiny_proc.tokenizer,
                                    num_image_tokens=cfg.num_image_tokens)


def _bottle(seed: int, spec: int = 0) -> Image.Image:
    from ilearn.data.bottles import BOTTLES, render_view

    return render_view(BOTTLES[spec], seed)


def test_instance_path_changes_nothing_until_trained_then_learns(tmp_path):
    model, proc = _instance_model()
    text = proc.apply_chat_template(chat("what is this?"), tokenize=False, add_generation_prompt=True)
    batch = proc(text=text, images=_bottle(1), return_tensors="pt")
    features = model.vision(batch["pixel_values"])
    assert features.shape[1] == 1280 + 128
    vector = features[0, 1280:, 0, 0]
    assert torch.allclose(vector.norm(), torch.tensor(1.0), atol=1e-4)
    assert torch.equal(features[0, 1280:, 0, 0], features[0, 1280:, -1, -1])  # the same in every cell
    with torch.inference_mode():
        plain = model.projector.fc2(model.projector.act(model.projector.fc1(
            model.projector.norm(model.projector.tokens(features[:, :1280])))))
        assert torch.equal(model.image_tokens(batch["pixel_values"]), plain)

    labels = batch["input_ids"].clone()
    model.train()
    model(**batch, labels=labels).loss.backward()
    assert model.projector.instance[-1].weight.grad.abs().sum() > 0
    optimiser = torch.optim.SGD(model.projector.instance.parameters(), lr=1.0)
    optimiser.step()
    model.eval()
    with torch.inference_mode():
        assert not torch.allclose(model.image_tokens(batch["pixel_values"]), plain)

    model.save_pretrained(tmp_path)  # the instance branch and path round-trip like the rest
    again = ComposedVLM.from_pretrained(tmp_path).eval()
    with torch.inference_mode():
        assert torch.allclose(model(**batch).logits, again(**batch).logits, atol=1e-5)


def test_instance_features_match_the_retrieval_embedder():
    from ilearn.models.instance import InstanceImageEmbedder, load_net, prepare

    model, proc = _instance_model()
    model.vision.instance.net.load_state_dict(load_net().state_dict())
    images = [_bottle(3, 0), _bottle(4, 0), _bottle(3, 5)]
    pixels = proc.image_processor(images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ours = model.vision.instance(pixels).numpy()
    # the same network and crop on the same (resized) pixels as retrieval computes it (one view of each image)
    theirs = InstanceImageEmbedder().embed_prepared(
        np.stack([prepare(im.resize((96, 96), Image.Resampling.BICUBIC)) for im in images]))
    assert (ours * theirs).sum(1).min() > 0.95
    assert ours[0] @ ours[1] > ours[0] @ ours[2]  # two views of one bottle are closer than another bottle
