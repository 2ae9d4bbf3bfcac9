"""The training process: ``python -m backend.services.train_worker train|merge|export RUN_DIR/spec.json``.

The train, merge and export jobs run it as a child process, so an out-of-memory or a crash ends that process, not the
server, and every byte it held goes back to the system when it exits. The same entry point runs under
``torchrun`` / ``accelerate launch`` on several processes (DDP): rank 0 reports and saves, every rank stops.

It talks to the job through files in the run folder:

- ``events.jsonl``: one JSON object per line, appended by rank 0: ``status`` (a new phase), ``plan`` (the steps
  the Trainer will take), ``resumed`` (the checkpoint step it went on from), ``log`` (loss, eval loss, learning
  rate, tokens per second), ``done`` (the result), ``error`` (why it failed, in plain words);
- ``STOP``: when it appears (or the parent process goes away) training stops after the current step and saves a
  checkpoint in ``checkpoints/``, from which a rerun with the same spec continues; an export stops between
  tensors.

Exit status: 0 done, 3 stopped with a checkpoint, 1 failed (the last ``error`` event says why).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.errors import StudioError
from backend.schemas.exports import ExportSpec
from backend.schemas.training import AdapterInfo, MergeSpec, TrainSpec
from backend.utils.libraries import import_libraries

EXIT_STOPPED = 3
EVAL_MIN_STEPS = 20
ADAPTER_META = "orchard_adapter.json"


class Events:
    """Appends events to ``events.jsonl`` (rank 0 only; other ranks stay quiet)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = run_dir / "events.jsonl"
        self.enabled = enabled

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")


class StopSignal:
    """Whether the job asked this run to stop: the STOP file, or the server that started it is gone."""

    def __init__(self, run_dir: Path) -> None:
        self.file = run_dir / "STOP"
        parent = os.environ.get("ORCHARD_PARENT_PID")
        self.parent = int(parent) if parent else None

    def requested(self) -> bool:
        return self.file.exists() or (self.parent is not None and os.getppid() != self.parent)


def _agree(flag: bool) -> bool:
    """True on every rank when any rank says so: ranks must stop at the same step or the others would hang."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def held_out(count: int, share: float) -> int:
    """How many of ``count`` rows the eval split holds: ``share`` of them, at least one when there is any share
    and 2+ rows, and never all of them."""
    held = round(count * share)
    if share > 0 and count >= 2:
        held = min(max(held, 1), count - 1)
    return held


def split_examples(
    examples: list[dict[str, Any]], share: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded shuffle, then :func:`held_out` rows held out for evaluation."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = held_out(len(order), share)
    return [examples[i] for i in order[held:]], [examples[i] for i in order[:held]]


def training_examples(
    tokenizer: Any, rows: list[dict[str, Any]], max_seq_length: int
) -> tuple[list[dict[str, Any]], int]:
    """The rows as training examples (ids, labels, the row), and how many were left out: too long, nothing to
    train on, or a template that cannot render them. The plan counts with this too."""
    from backend.services.dataset_tools import encode_example

    examples, dropped = [], 0
    for row in rows:
        try:
            ids, labels = encode_example(tokenizer, row)
        except Exception:  # jinja's errors: a template that refuses the row
            dropped += 1
            continue
        if len(ids) > max_seq_length or all(label == -100 for label in labels):
            dropped += 1
            continue
        examples.append({"input_ids": ids, "labels": labels, "row": row})
    return examples, dropped


def load_examples(spec: TrainSpec, tokenizer: Any) -> tuple[list[dict[str, Any]], int]:
    """:func:`training_examples` of ``rows_path``: any file ``POST /datasets`` accepts (the server's runs pass
    their normalised copy)."""
    from backend.services.dataset_tools import parse_dataset

    path = Path(spec.rows_path)
    _, _, rows = parse_dataset(path.read_bytes(), path.name)
    return training_examples(tokenizer, rows, spec.max_seq_length)


def _prompt_of(tokenizer: Any, row: dict[str, Any]) -> tuple[str, str, list[int]] | None:
    """A held-out row as (prompt shown, expected answer, prompt ids): the conversation up to its last reply."""
    from backend.services.dataset_tools import _render

    if "text" in row:
        words = row["text"].split()
        if len(words) < 4:
            return None
        head, tail = " ".join(words[: len(words) // 3]), " ".join(words[len(words) // 3 :])
        return head, tail, list(tokenizer(head, add_special_tokens=True)["input_ids"])
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    text = _render(tokenizer, messages[:last], generation_prompt=True)
    shown = next((m["content"] for m in reversed(messages[:last]) if m["role"] == "user"), text)
    return shown, messages[last]["content"], list(tokenizer(text, add_special_tokens=False)["input_ids"])


def compare_answers(model: Any, tokenizer: Any, rows: list[dict[str, Any]], limit: int) -> list[dict[str, str]]:
    """Greedy answers of the base (adapter off) and the tuned model to a few held-out prompts."""
    import torch

    out: list[dict[str, str]] = []
    model.eval()
    device = next(model.parameters()).device
    for row in rows:
        if len(out) >= limit:
            break
        prompt = _prompt_of(tokenizer, row)
        if prompt is None:
            continue
        shown, expected, ids = prompt
        inputs = torch.tensor([ids], device=device)
        options = {
            "max_new_tokens": 64,
            "do_sample": False,
            "use_cache": True,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        }
        with torch.no_grad():
            tuned = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), **options)
            with model.disable_adapter():
                base = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), **options)
        answer = {
            "base": tokenizer.decode(base[0, len(ids) :], skip_special_tokens=True).strip(),
            "tuned": tokenizer.decode(tuned[0, len(ids) :], skip_special_tokens=True).strip(),
        }
        out.append({"prompt": shown, "expected": expected, **answer})
    return out


def peak_memory_gb(device: str) -> float | None:
    """This process's peak memory: allocated on the GPU for CUDA, else the resident set (unified memory on MPS)."""
    import resource

    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1024**3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024**3 if sys.platform == "darwin" else 1024**2)


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    # MPS reports running out of memory as a plain RuntimeError: its message is all there is to go by.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def train(spec: TrainSpec, events: Events) -> int:
    import_libraries("training")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    run_dir = Path(spec.run_dir)
    rank = int(os.environ.get("RANK", "0"))
    stop = StopSignal(run_dir)
    events.emit("status", status="preparing")
    set_seed(spec.seed)

    tokenizer = AutoTokenizer.from_pretrained(spec.model_path)
    if tokenizer.pad_token_id is None:  # batches pad with EOS (masked out of the loss); the saved files are untouched
        tokenizer.pad_token = tokenizer.eos_token
    examples, dropped = load_examples(spec, tokenizer)
    train_rows, eval_rows = split_examples(examples, spec.validation_split, spec.seed)
    if not train_rows:
        events.emit(
            "error", code="invalid_dataset", message="No row of the dataset fits max_seq_length.", status_code=422
        )
        return 1

    model = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=getattr(torch, spec.dtype))
    model.config.use_cache = False
    lora = LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft says it set fan_in_fan_out for GPT-2's Conv1D, and calls a name transformers 5 deprecates
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, lora)

    def features(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]

    checkpoints = run_dir / "checkpoints"
    per_epoch = math.ceil(math.ceil(len(train_rows) / spec.batch_size) / spec.gradient_accumulation_steps)
    planned = spec.max_steps or per_epoch * spec.epochs
    # Evaluate and checkpoint every tenth of the run, but not more often than every EVAL_MIN_STEPS steps: on a short
    # run they would cost more than the steps between them (the first and the last evaluation always happen).
    every = min(max(EVAL_MIN_STEPS, planned // 10), max(planned, 1))
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        learning_rate=spec.learning_rate,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps or -1,
        lr_scheduler_type="linear",
        logging_steps=max(1, planned // 200),
        eval_strategy="steps" if eval_rows else "no",
        eval_steps=every,
        save_strategy="steps",
        save_steps=every,
        save_total_limit=1,
        seed=spec.seed,
        data_seed=spec.seed,
        use_cpu=spec.device == "cpu",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )

    class Reporter(TrainerCallback):
        stopped = False
        clock = (time.monotonic(), 0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            events.emit("plan", total_steps=state.max_steps, train_examples=len(train_rows), dropped=dropped)
            if state.global_step:
                events.emit("resumed", step=state.global_step)
            events.emit("status", status="training")
            self.clock = (time.monotonic(), state.num_input_tokens_seen)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
            logs = logs or {}
            now, seen = time.monotonic(), state.num_input_tokens_seen
            speed = (seen - self.clock[1]) / (now - self.clock[0]) if "loss" in logs and now > self.clock[0] else None
            if "loss" in logs:
                self.clock = (now, seen)
            events.emit(
                "log",
                step=state.global_step,
                total_steps=state.max_steps,
                epoch=state.epoch or 0.0,
                loss=logs.get("loss"),
                eval_loss=logs.get("eval_loss"),
                learning_rate=logs.get("learning_rate"),
                tokens_per_second=speed,
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if _agree(stop.requested()):
                control.should_save = True
                control.should_training_stop = True
                self.stopped = True

    reporter = Reporter()
    trainer = Trainer(
        model=peft_model,
        args=args,
        train_dataset=features(train_rows),
        eval_dataset=features(eval_rows) if eval_rows else None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[reporter],
    )
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    first_eval = None
    if eval_rows and not resume:  # the curve starts where the base model stands (logged as step 0)
        first_eval = trainer.evaluate()["eval_loss"]
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.monotonic() - started
    if reporter.stopped:
        events.emit("stopped", step=trainer.state.global_step)
        return EXIT_STOPPED
    final_eval = trainer.evaluate()["eval_loss"] if eval_rows else None
    if rank != 0:
        return 0

    events.emit("status", status="saving")
    adapter_dir = run_dir / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    samples = compare_answers(peft_model, tokenizer, [r["row"] for r in eval_rows or train_rows], spec.samples)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    info = AdapterInfo(
        id=spec.job_id,
        name=spec.name,
        path=str(adapter_dir),
        base_model_id=spec.model_id,
        base_model_path=spec.model_path,
        base_architecture=(getattr(model.config, "architectures", None) or [None])[0],
        dataset_id=spec.dataset_id,
        dataset_name=spec.dataset_name,
        lora=spec.lora,
        chat_template=getattr(tokenizer, "chat_template", None) or None,
        eos_token=tokenizer.eos_token,
        steps=trainer.state.global_step,
        train_loss=losses[-1] if losses else None,
        eval_loss=final_eval,
        size_bytes=sum(f.stat().st_size for f in adapter_dir.rglob("*") if f.is_file()),
        created_at=datetime.now(UTC),
        job_id=spec.job_id,
    )
    (adapter_dir / ADAPTER_META).write_text(info.model_dump_json(indent=2), encoding="utf-8")
    events.emit(
        "done",
        steps=trainer.state.global_step,
        epochs=trainer.state.epoch or 0.0,
        train_loss=info.train_loss,
        first_eval_loss=first_eval,
        eval_loss=final_eval,
        train_seconds=train_seconds,
        peak_memory_gb=peak_memory_gb(spec.device),
        samples=samples,
        train_output_loss=output.training_loss,
    )
    return 0


def merge(spec: MergeSpec, events: Events) -> int:
    """The adapter folded into its base model's weights (in their own dtype), saved as a complete model with the
    base's tokenizer and chat template: the ones the adapter was trained with."""
    import_libraries("training")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    events.emit("status", status="merging")
    base = AutoModelForCausalLM.from_pretrained(spec.base_model_path, dtype="auto")
    merged = PeftModel.from_pretrained(base, spec.adapter_path).merge_and_unload()
    events.emit("status", status="saving")
    out = Path(spec.output_dir)
    merged.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(spec.base_model_path).save_pretrained(str(out))
    events.emit("done")
    return 0


def export(spec: ExportSpec, events: Events, stop: StopSignal) -> int:
    """A GGUF export (:func:`backend.services.export_gguf.run_export`), its result in the ``done`` event."""
    from backend.services.export_gguf import ExportCheckFailed, StopRequested, run_export

    try:
        info = run_export(spec, events.emit, stop.requested)
    except StopRequested:
        events.emit("stopped", step=None)
        return EXIT_STOPPED
    except ExportCheckFailed as exc:
        events.emit(
            "error", code="export_check_failed", message=str(exc), status_code=422, details=exc.check.model_dump()
        )
        return 1
    events.emit("done", result=info.model_dump(mode="json"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("train", "merge", "export"):
        print("usage: python -m backend.services.train_worker train|merge|export SPEC.json", file=sys.stderr)
        return 2
    mode, spec_path = args[0], Path(args[1])
    text = spec_path.read_text(encoding="utf-8")
    run_dir = spec_path.parent
    events = Events(run_dir, enabled=int(os.environ.get("RANK", "0")) == 0)
    try:
        if mode == "merge":
            return merge(MergeSpec.model_validate_json(text), events)
        if mode == "export":
            return export(ExportSpec.model_validate_json(text), events, StopSignal(run_dir))
        return train(TrainSpec.model_validate_json(text), events)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            events.emit("stopped", step=None)
            return EXIT_STOPPED
        if isinstance(exc, StudioError):  # a refusal in plain words (an unsupported tokenizer, say)
            events.emit("error", code=exc.code, message=exc.message, status_code=exc.status_code, details=exc.details)
            return 1
        # The traceback goes to the log (stderr, which the job keeps as worker.log); the job shows the kind.
        code = "insufficient_memory" if _out_of_memory(exc) else f"{mode}_failed"
        events.emit("error", code=code, exception=type(exc).__name__)
        raise


if __name__ == "__main__":
    sys.exit(main())
