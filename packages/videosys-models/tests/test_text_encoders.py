"""T5 and mT5 text encoding from a local folder: token masks, padding that changes nothing, clear errors."""

from __future__ import annotations

import pytest
import torch

from videosys.models.text_encoders import T5TextEncoder, encode_prompts, load_text_encoder, mask_features


def test_features_and_mask_of_a_padded_batch(t5_folder):
    encoder = T5TextEncoder.from_pretrained(t5_folder, max_length=300)
    features, mask = encoder(["a cat runs on the beach", "a dog"])
    assert features.shape == (2, 300, 16) and encoder.hidden_size == 16
    assert mask.sum(dim=1).tolist() == [7, 3]  # words + end-of-sequence
    assert mask[0, :7].all() and not mask[0, 7:].any()
    # Padding is masked out of attention: each prompt alone, unpadded, gives the same real-token features.
    for i, (text, length) in enumerate((("a cat runs on the beach", 7), ("a dog", 3))):
        ids = encoder.tokenizer(text, return_tensors="pt").input_ids
        assert ids.shape[1] == length
        with torch.no_grad():
            alone = encoder.encoder(input_ids=ids).last_hidden_state[0]
        torch.testing.assert_close(features[i, :length], alone, rtol=1e-5, atol=1e-6)


def test_truncates_to_max_length_and_casts(t5_folder):
    encoder = T5TextEncoder.from_pretrained(t5_folder, max_length=4, dtype=torch.float64)
    features, mask = encoder(["a cat runs on the beach at sunset"])
    assert features.shape == (1, 4, 16) and features.dtype == torch.float64 and mask.all()


def test_errors_name_the_problem(tmp_path, t5_folder):
    with pytest.raises(FileNotFoundError, match="no config.json.*DeepFloyd/t5-v1_1-xxl"):
        T5TextEncoder.from_pretrained(tmp_path)
    encoder = T5TextEncoder.from_pretrained(t5_folder)
    with pytest.raises(ValueError, match="non-empty list of strings, got 'a cat'"):
        encoder("a cat")
    with pytest.raises(ValueError, match="max_length must be >= 1, got 0"):
        T5TextEncoder(encoder.tokenizer, encoder.encoder, max_length=0)


def test_an_mt5_folder_gives_the_encoder_of_its_encoder_decoder(mt5_folder):
    """google/mt5-xxl ships the whole encoder-decoder: the loader keeps the encoder, whose features equal the
    saved model's own encoder stack on the same tokens."""
    from transformers import MT5EncoderModel, MT5ForConditionalGeneration

    encoder = load_text_encoder(mt5_folder)
    assert type(encoder) is MT5EncoderModel
    full = MT5ForConditionalGeneration.from_pretrained(mt5_folder).eval()
    text = T5TextEncoder.from_pretrained(mt5_folder, max_length=8)
    features, mask = text(["a cat runs", "a red dog walks on the beach"])
    tokens = text.tokenizer(["a cat runs", "a red dog walks on the beach"], padding="max_length", max_length=8,
                            return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        expected = full.encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    assert mask.tolist() == tokens.attention_mask.tolist()


def test_unknown_encoder_family_is_named(tmp_path, t5_folder):
    import json
    import shutil

    folder = tmp_path / "clip"
    shutil.copytree(t5_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "clip_text_model"}))
    with pytest.raises(ValueError, match="model_type 'clip_text_model'; expected one of t5, mt5, umt5"):
        load_text_encoder(folder)


def test_prompts_and_their_negatives_are_lower_cased_and_stripped(t5_folder):
    encoder = T5TextEncoder.from_pretrained(t5_folder, max_length=6)
    text = encode_prompts(encoder.tokenizer, encoder.encoder, ["  A Cat ", "a dog runs"], ["Snow", " Rain  "], 6)
    expected, mask = encoder(["a cat", "a dog runs"])
    torch.testing.assert_close(text.features, expected)  # batches of different texts round differently
    assert text.mask.tolist() == mask.tolist()
    negative, negative_mask = encoder(["snow", "rain"])
    torch.testing.assert_close(text.negative, negative)
    assert text.negative_mask.tolist() == negative_mask.tolist()
    alone = encode_prompts(encoder.tokenizer, encoder.encoder, ["a cat"], None, 6)
    assert alone.negative is None and alone.negative_mask is None


def test_mask_feature_cuts_one_prompt_and_zeroes_a_batch_padding():
    features = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3) + 1
    negative = -features
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    cut, cut_negative = mask_features(features[:1], mask[:1], negative[:1])
    assert torch.equal(cut, features[:1, :2]) and torch.equal(cut_negative, negative[:1, :2])
    zeroed, whole = mask_features(features, mask, negative)
    expected = features.clone()
    expected[0, 2:] = 0
    expected[1, 3:] = 0
    assert torch.equal(zeroed, expected) and whole is negative
    assert mask_features(features[:1], mask[:1], None)[1] is None


def test_half_precision_keeps_the_feed_forward_output_in_float32(t5_folder):
    """As ``from_pretrained(torch_dtype=float16)`` loads T5 in the original pipelines (v1.1 XXL overflows without)."""
    encoder = load_text_encoder(t5_folder, dtype=torch.float16)
    assert encoder.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    assert encoder.shared.weight.dtype == torch.float16
