"""Figure 8: prompt synthesis per prompt, cold (empty cache: espeak-ng runs) vs warm (cache hit).

Reads :attr:`daemon.prompts.PromptSet.timings`, which :meth:`PromptCache.prepare` fills in; each run uses a
fresh temporary cache directory, so "cold" really is cold.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import anyio

from benchmarks._proc import emit
from daemon.config import PromptsConfig
from daemon.prompts import PromptCache


async def one_run(language: str) -> dict[str, Any]:
    config = PromptsConfig(language=language)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="bench-prompts-") as tmp:
        cold = await PromptCache(tmp).prepare(config, rates=(16000, 8000))
        warm = await PromptCache(tmp).prepare(config, rates=(16000, 8000))
    return {
        name: {
            "cold_total_ms": cold.timings[name].total_seconds * 1000,
            "cold_engine_ms": cold.timings[name].engine_seconds * 1000,
            "warm_total_ms": warm.timings[name].total_seconds * 1000,
            "warm_hit": warm.timings[name].cache_hit,
        }
        for name in cold.timings
    }


async def run(repeats: int, language: str) -> dict[str, Any]:
    return {"language": language, "runs": [await one_run(language) for _ in range(repeats)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--language", default="pt-BR")
    args = ap.parse_args()
    emit(anyio.run(run, args.repeats, args.language))


if __name__ == "__main__":
    main()
