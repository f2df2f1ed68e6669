"""T5 text encoding from a local folder: token masks, padding that changes nothing, clear errors."""

from __future__ import annotations

import pytest
import torch

from videosys.models.text_encoders import T5TextEncoder


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
