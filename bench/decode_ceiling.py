"""What batching can give on this machine at all, in one process (no server, no HTTP): Orchard's batched decoder
against `generate` on the same batch of equal prompts, and against transformers' continuous batching (one manager
started once and kept running, as a server would keep it; paged attention), on the best device present.

    python -m bench.decode_ceiling [MODEL_FOLDER DTYPE MAX_NEW]

prints one JSON line: for 1, 4 and 8 rows the best of 3 tokens/s of each way, and whether continuous batching's
greedy tokens are Orchard's. Without arguments it makes the bench's 100M Llama (bench/.cache) and uses float32 and
64 new tokens. It needs torch, transformers and tokenizers only, so it runs on a lent GPU machine as it is.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import types
from pathlib import Path
from typing import Any

ROWS = (1, 4, 8)


def measure(path: Path, dtype: str, max_new: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from backend.services.batching import BatchDecoder

    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    logging.getLogger("transformers").setLevel(logging.ERROR)

    def copy() -> Any:  # each way gets its own copy of the model as loaded
        return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    model, plain_model = copy(), copy()
    params = types.SimpleNamespace(temperature=0, repetition_penalty=1.0, top_k=0, top_p=1.0, seed=None)
    prompt = list(range(10, 40))

    def ours(rows: int) -> list[list[int]]:
        decoder = BatchDecoder(model)
        batch = [decoder.new_row(params, prompt) for _ in range(rows)]
        for row, logits in zip(batch, decoder.prefill(batch), strict=True):
            row.next_input = decoder.choose(row, logits)
            row.ids.append(row.next_input)
        for _ in range(max_new - 1):
            for row, logits in zip(batch, decoder.step(), strict=True):
                row.next_input = decoder.choose(row, logits)
                row.ids.append(row.next_input)
        return [row.ids[len(prompt) :] for row in batch]

    def plain(rows: int) -> None:
        ids = torch.tensor([prompt] * rows, device=device)
        plain_model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, min_new_tokens=max_new, do_sample=False
        )
        sync()

    def rate(rows: int, way: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        out = way(rows)
        return rows * max_new / (time.perf_counter() - started), out

    ours(1)
    plain(1)
    figures: dict[int, dict[str, float]] = {rows: {"ours": 0.0, "generate": 0.0} for rows in ROWS}
    replies: dict[int, list[list[int]]] = {}
    for rows in ROWS:
        for _ in range(3):
            r, replies[rows] = rate(rows, ours)
            figures[rows]["ours"] = max(figures[rows]["ours"], r)
            figures[rows]["generate"] = max(figures[rows]["generate"], rate(rows, plain)[0])

    # transformers' continuous batching, measured on its own: its manager's thread runs beside the caller's
    cb_model = copy()
    manager = cb_model.init_continuous_batching(
        generation_config=GenerationConfig(max_new_tokens=max_new, do_sample=False, eos_token_id=-1)
    )
    manager.start()

    def continuous(rows: int) -> list[list[int]]:
        manager.add_requests([prompt] * rows, max_new_tokens=max_new)
        done: dict[str, list[int]] = {}
        while len(done) < rows:
            result = manager.get_result(timeout=60)
            if result is None:
                raise RuntimeError("continuous batching returned no result within a minute")
            if result.is_finished():
                done[result.request_id] = list(result.generated_tokens)
        return list(done.values())

    same = True
    try:
        continuous(1)  # the first request sizes and allocates the paged cache (tens of seconds on CPU)
        attention = cb_model.config._attn_implementation  # the manager switches it while it runs
        for rows in ROWS:
            figures[rows]["continuous"] = 0.0
            for _ in range(3):
                r, theirs = rate(rows, continuous)
                figures[rows]["continuous"] = max(figures[rows]["continuous"], r)
                same = same and sorted(theirs) == sorted(replies[rows])
    finally:
        manager.stop(block=True)
    return {
        "device": device,
        "rows": figures,
        "weight_first": bool(getattr(model, "_orchard_weight_first", False)),
        "same": same,
        "torch": torch.__version__,
        "attention": attention,
    }


def main(argv: list[str]) -> None:
    if argv:
        path, dtype, max_new = Path(argv[0]), argv[1], int(argv[2])
    else:
        from bench.models import model_path

        path, dtype, max_new = model_path("100m", "float32"), "float32", 64
    print(json.dumps(measure(path, dtype, max_new)))


if __name__ == "__main__":
    main(sys.argv[1:])
