"""benchmarks._aec_call_signal.aligned_to_mic: what was sent, placed on the microphone's samples at any lag."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._aec_call_signal import aligned_to_mic
from benchmarks.aec_speech import RATE

BLOCK = RATE // 2


@pytest.mark.parametrize("lag", [-3_000, 0, 2_500])
def test_sent_lands_on_the_microphone_sample_for_sample_to_the_last_short_block(lag: int) -> None:
    rng = np.random.default_rng(7)
    sent = rng.standard_normal(RATE * 4)
    length = 3 * BLOCK + 6_400  # the microphone ends in a short block (a call's recording rarely fills its last)
    # mic[n] = sent[n + lag]: negative, what was sent starts after the microphone's first samples
    mic = np.array([sent[n + lag] if 0 <= n + lag < len(sent) else 0.0 for n in range(length)])
    out = aligned_to_mic(mic, sent)
    assert len(out) == len(mic)
    np.testing.assert_allclose(out, mic)
