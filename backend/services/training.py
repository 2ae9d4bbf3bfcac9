"""Fine-tuning with LoRA as ``train`` jobs: the memory plan, the job that supervises the training process, and
the process runner the merge job shares.

``queued → preparing`` (the training process starts, reads the model and tokenizes the rows) ``→ training``
(progress in optimizer steps, with loss, eval loss, learning rate, tokens/s and the loss curve) ``→ saving``
(the adapter, and the base and tuned model's answers to a few held-out prompts) ``→ ready``.

The work runs in :mod:`backend.services.train_worker`, a child process: an out-of-memory or a crash fails the job
with the cause, the server keeps serving, and every byte the run held goes back when the process exits. Cancel
asks the process to stop after its current step; it saves a checkpoint there, and a resume goes on from it with
the same data order and random state (the Trainer's own resume), so the loss curve continues as if never cut.
A finished adapter is moved into ``OUTPUTS_DIR/adapters/<job id>`` only when complete.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.errors import (
    InsufficientMemoryError,
    InvalidModelError,
    InvalidRequestError,
    JobCancelled,
    ModelNotLoadedError,
    StudioError,
    TrainingFailedError,
)
from backend.schemas.datasets import DatasetInfo
from backend.schemas.training import (
    LoraSpec,
    MemoryBreakdown,
    SampleAnswer,
    TrainJob,
    TrainPlan,
    TrainPoint,
    TrainProgress,
    TrainRequest,
    TrainResult,
    TrainSpec,
)
from backend.services.dataset_tools import DatasetService
from backend.services.jobs import JobKind, JobRun
from backend.services.model_files import inspect_folder
from backend.services.model_service import ModelService
from backend.services.train_worker import EXIT_STOPPED, held_out, training_examples
from backend.utils.libraries import import_libraries, import_lock
from backend.utils.mac_optimization import DTYPE_BYTES, GB

logger = logging.getLogger(__name__)

STOP_GRACE_S = 120.0  # how long a stopping run may take to save its checkpoint before it is killed
POLL_S = 0.2
# Values autograd keeps per token per layer for the backward pass, counted for a pre-norm decoder block with a gated
# MLP and LoRA on every linear layer (Korthikanti et al. 2022 count ~17 per hidden unit for GPT's plain MLP):
# attention ~6 hidden-sized tensors (norm, q/k/v/o inputs and outputs) plus one score per head per position; the MLP
# ~1 hidden + 5 intermediate-sized (gate, up, activation, product, down input); LoRA's dropout copies of its inputs
# ~6 hidden + 1 intermediate. The logits add three float32 copies (logits, log-softmax, gradient) per vocabulary
# entry per token.
ACTIVATION_HIDDEN, ACTIVATION_INTERMEDIATE = 13, 6
LOGIT_COPIES = 3
# The training process itself before any model: Python, torch, transformers and peft (0.72 GB resident measured on
# Linux, torch 2.15), or the CUDA context on a GPU.
RUNTIME_GB = 0.75


def training_dtype(device: str, models: ModelService) -> str:
    """float32 on CPU (exact, and CPUs gain little from 16-bit here); elsewhere the dtype the device supports
    (bfloat16 where it can, float16 on older MPS and CUDA). The adapter itself always trains in float32."""
    return "float32" if device == "cpu" else models.optimizer.get_dtype(device)


def run_worker(
    run: JobRun[Any],
    mode: str,
    run_dir: Path,
    on_event: Callable[[dict[str, Any]], None],
) -> None:
    """Run ``train_worker <mode> run_dir/spec.json`` as a child process and follow its events until it ends.

    A cancel of the job writes ``STOP``; the process saves a checkpoint and exits (killed if it takes longer than
    :data:`STOP_GRACE_S`). Raises :class:`JobCancelled` when it stopped, and a :class:`StudioError` saying why when
    it failed or was killed.
    """
    events = run_dir / "events.jsonl"
    stop = run_dir / "STOP"
    stop.unlink(missing_ok=True)
    offset = events.stat().st_size if events.exists() else 0  # earlier attempts' events are already counted
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTORCH_ENABLE_MPS_FALLBACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ORCHARD_PARENT_PID": str(os.getpid()),
    }
    command = [sys.executable, "-m", "backend.services.train_worker", mode, str(run_dir / "spec.json")]
    errors: list[dict[str, Any]] = []
    with (run_dir / "worker.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        run.update(worker_pid=process.pid)
        stopping_since: float | None = None
        pending = ""
        try:
            while True:
                ended = process.poll() is not None
                if events.exists():
                    with events.open(encoding="utf-8") as src:
                        src.seek(offset)
                        chunk = src.read()
                        offset += len(chunk.encode("utf-8"))
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        if line.strip():
                            event = json.loads(line)
                            if event.get("event") == "error":
                                errors.append(event)
                            on_event(event)
                if ended:
                    break
                if run.cancel.is_set() and stopping_since is None:
                    stop.touch()
                    stopping_since = time.monotonic()
                elif stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
                    logger.warning("%s process %d did not stop in %.0f s; killing it", mode, process.pid, STOP_GRACE_S)
                    process.kill()
                time.sleep(POLL_S)
        finally:
            if process.poll() is None:  # the supervising thread itself failed: never leave the process behind
                process.kill()
                process.wait()
            run.update(worker_pid=None)
    code = process.returncode
    if code == 0:
        return
    if code == EXIT_STOPPED or (run.cancel.is_set() and stopping_since is not None):
        raise JobCancelled()
    tail = (run_dir / "worker.log").read_text(encoding="utf-8", errors="replace")[-4000:]
    logger.error("%s process for job %s exited with %s; the end of its log:\n%s", mode, run.job.id, code, tail)
    if errors and errors[-1].get("message"):  # the process said why, in words
        last = errors[-1]
        error = StudioError(last["message"], **(last.get("details") or {}))
        error.status_code, error.code = int(last.get("status_code", 500)), str(last["code"])
        raise error
    if errors and errors[-1].get("code") == "insufficient_memory":
        raise InsufficientMemoryError("out of memory", exception=errors[-1].get("exception"))
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " The system stops processes this way when memory runs out." if -code == signal.SIGKILL else ""
        raise TrainingFailedError(
            f"The {mode} process was killed ({name}).{hint} Resume the job to go on from its last checkpoint.",
            signal=name,
        )
    raise TrainingFailedError(
        f"The {mode} process failed ({(errors[-1].get('exception') if errors else None) or f'exit status {code}'}); "
        f"its log is {run_dir / 'worker.log'}.",
        exit_status=code,
    )


class TrainKind(JobKind[TrainJob]):
    """LoRA fine-tunes: one process per job, supervised from a worker thread of the server."""

    name = "train"
    schema = TrainJob
    phases = ("queued", "preparing", "training", "saving")
    resumable = True
    # One run at a time: the plan counts the memory free now, which a second run would take. Later ones wait queued.
    serial = True

    def __init__(self, settings: Settings, models: ModelService, datasets: DatasetService) -> None:
        self.settings = settings
        self.models = models
        self.datasets = datasets

    @property
    def runs_root(self) -> Path:
        return self.settings.outputs_path / "runs"

    @property
    def adapters_root(self) -> Path:
        return self.settings.outputs_path / "adapters"

    # ----------------------------------------------------------------- the plan

    def plan(self, request: TrainRequest) -> TrainPlan:
        """What a run of ``request`` needs (memory by part, steps, examples) against what the device has free.

        Raises:
            DatasetNotFoundError, ModelNotFoundError, ModelNotLoadedError (no model_id and none loaded),
            InvalidModelError (an incomplete folder), InvalidRequestError (no row fits max_seq_length).
        """
        info = self.datasets.info(request.dataset_id)
        path, model_id = self._model(request.model_id)
        files = inspect_folder(path)
        if files.format == "gguf":
            raise InvalidModelError(
                f"'{model_id}' is a GGUF file, which cannot be fine-tuned: train the safetensors model it was made "
                "from, then export the result to GGUF.",
                model_id=model_id,
            )
        if not files.complete or files.config is None or files.format not in ("safetensors", "pytorch"):
            raise InvalidModelError(
                f"'{model_id}' cannot be trained: {'; '.join(files.problems) or 'no weights'}.", model_id=model_id
            )
        if files.format == "pytorch":
            self.models.check_pickle(model_id)
        self.models.check_remote_code(model_id, files.config, False)
        tokenizer = self._tokenizer(path)
        max_seq = request.max_seq_length or self.settings.train_max_seq_length
        examples, dropped = training_examples(tokenizer, self.datasets.rows(request.dataset_id), max_seq)
        lengths = [len(example["input_ids"]) for example in examples]
        if not lengths:
            raise InvalidRequestError(
                f"No row of dataset '{info.name}' fits max_seq_length={max_seq} tokens with something to train on; "
                "raise max_seq_length or check the dataset (GET /datasets/{id}).",
                dataset_id=info.id,
            )
        n = len(lengths)
        held = held_out(n, request.validation_split)
        train_examples = n - held

        device = self.models.optimizer.get_device()
        dtype = training_dtype(device, self.models)
        lora = self.lora_spec(request)
        num_params = files.num_parameters or 0
        trainable = self._trainable_parameters(files.config, lora)
        config = files.config.get("text_config") or files.config
        hidden = int(config.get("hidden_size") or config.get("n_embd") or 0)
        layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 0)
        vocab = int(config.get("vocab_size") or 0)
        intermediate = int(config.get("intermediate_size") or config.get("n_inner") or 4 * hidden)
        heads = int(config.get("num_attention_heads") or config.get("n_head") or 1)
        longest = max(lengths)
        per_value = DTYPE_BYTES.get(dtype, 4)
        per_token_layer = ACTIVATION_HIDDEN * hidden + ACTIVATION_INTERMEDIATE * intermediate + heads * longest
        per_sequence_gb = longest * (per_value * per_token_layer * layers + LOGIT_COPIES * 4 * vocab) / GB
        fixed = {
            "runtime_gb": RUNTIME_GB,
            "weights_gb": num_params * per_value / GB,
            "adapter_gb": trainable * 4 / GB,
            "gradients_gb": trainable * 4 / GB,
            "optimizer_gb": trainable * 8 / GB,
        }
        available = self.models.optimizer.memory_available_gb(device)
        room = available - sum(fixed.values())
        proposed = 1
        cap = min(self.settings.train_max_batch_size, max(train_examples, 1))
        while proposed * 2 <= cap and (proposed * 2) * per_sequence_gb <= room:
            proposed *= 2
        batch = request.batch_size or self.settings.train_batch_size or proposed
        accumulation = request.gradient_accumulation_steps or self.settings.train_gradient_accumulation_steps
        epochs = request.epochs or self.settings.train_epochs
        per_epoch = math.ceil(math.ceil(train_examples / batch) / accumulation)
        steps = request.max_steps or per_epoch * epochs
        memory = {**fixed, "activations_gb": batch * per_sequence_gb}
        total = sum(memory.values())
        fits = total <= available
        loaded = self.models.cache.current
        loaded_gb = loaded.metadata.measured_memory_gb if loaded else 0.0
        reason = (
            f"needs about {total:.2f} GB on {device} ({dtype} weights, batch {batch} of up to {longest} tokens); "
            f"{available:.2f} GB free"
            + (f", with '{loaded.metadata.model_id}' ({loaded_gb:.2f} GB) staying loaded for chat" if loaded else "")
            + ("" if fits else f". Lower batch_size (batch {proposed} fits) or max_seq_length, or unload the model")
        )
        return TrainPlan(
            model_id=model_id,
            model_path=str(path),
            dataset_id=info.id,
            device=device,
            dtype=dtype,
            num_parameters=num_params,
            trainable_parameters=trainable,
            batch_size=batch,
            proposed_batch_size=proposed,
            gradient_accumulation_steps=accumulation,
            max_seq_length=max_seq,
            longest_example_tokens=longest,
            train_examples=train_examples,
            eval_examples=held,
            dropped_examples=dropped,
            total_steps=steps,
            memory=MemoryBreakdown(**memory, total_gb=total),
            available_gb=round(available, 3),
            loaded_model_gb=loaded_gb,
            fits=fits,
            reason=reason,
        )

    def lora_spec(self, request: TrainRequest) -> LoraSpec:
        targets = request.lora.target_modules or self.settings.lora_target_modules
        return LoraSpec(
            r=request.lora.r or self.settings.lora_r,
            alpha=request.lora.alpha or self.settings.lora_alpha,
            dropout=self.settings.lora_dropout if request.lora.dropout is None else request.lora.dropout,
            target_modules=targets or "all-linear",
        )

    def _model(self, model_id: str | None) -> tuple[Path, str]:
        if model_id is not None:
            path, resolved, _ = self.models.resolve_local(model_id, from_request=True)
            return path, resolved
        loaded = self.models.cache.current
        if loaded is None:
            raise ModelNotLoadedError("Pass model_id, or load the model to fine-tune first (POST /model/load).")
        return Path(loaded.metadata.path), loaded.metadata.model_id

    def _tokenizer(self, path: Path) -> Any:
        loaded = self.models.cache.current
        if loaded is not None and Path(loaded.metadata.path) == path:
            return loaded.tokenizer
        import_libraries()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)

    @staticmethod
    def _trainable_parameters(config: dict[str, Any], lora: LoraSpec) -> int:
        """LoRA's parameter count for this architecture, exactly: peft applied to the model built on the meta
        device (no memory, no weights)."""
        import_libraries("training")
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM

        values = dict(config)
        model_type = values.pop("model_type", None)
        try:
            with import_lock(), warnings.catch_warnings():
                # peft says it set fan_in_fan_out for GPT-2's Conv1D, and calls a name transformers 5 deprecates
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", FutureWarning)
                cfg = AutoConfig.for_model(model_type, **values)
                with torch.device("meta"):
                    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=False)  # type: ignore[no-untyped-call]
                peft_model = get_peft_model(
                    model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules)
                )
        except ValueError as exc:  # peft: a target module that is not in this architecture
            raise InvalidRequestError(
                f"LoRA target modules {lora.target_modules} are not all in this model; leave target_modules empty "
                "to adapt every linear layer.",
                target_modules=lora.target_modules,
            ) from exc
        trainable, _ = peft_model.get_nb_trainable_parameters()
        return int(trainable)

    # ----------------------------------------------------------------- the job

    def start(self, request: TrainRequest) -> TrainJob:
        """Plan, refuse with 507 when it will not fit (unless ``force``), copy the rows and start the job."""
        plan = self.plan(request)
        if not plan.fits and not request.force:
            raise InsufficientMemoryError(
                f"This run {plan.reason}; or pass force=true to try anyway.", plan=plan.model_dump(mode="json")
            )
        info = self.datasets.info(request.dataset_id)
        job_id = self.manager.new_id()
        run_dir = self.runs_root / job_id
        run_dir.mkdir(parents=True)
        try:
            return self._start(request, plan, info, job_id, run_dir)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-made stays behind
            raise

    def _start(self, request: TrainRequest, plan: TrainPlan, info: DatasetInfo, job_id: str, run_dir: Path) -> TrainJob:
        rows_path = run_dir / "rows.jsonl"
        # The run keeps its own copy: deleting or replacing the dataset cannot change a run or its resume.
        with rows_path.open("w", encoding="utf-8") as out:
            for row in self.datasets.rows(request.dataset_id):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        spec = TrainSpec(
            job_id=job_id,
            name=request.name or f"{plan.model_id.split('/')[-1]}-{info.name}",
            model_id=plan.model_id,
            model_path=plan.model_path,
            dataset_id=info.id,
            dataset_name=info.name,
            rows_path=str(rows_path),
            run_dir=str(run_dir),
            device=plan.device,
            dtype=plan.dtype,
            epochs=request.epochs or self.settings.train_epochs,
            max_steps=request.max_steps,
            learning_rate=request.learning_rate or self.settings.train_learning_rate,
            batch_size=plan.batch_size,
            gradient_accumulation_steps=plan.gradient_accumulation_steps,
            max_seq_length=plan.max_seq_length,
            lora=self.lora_spec(request),
            validation_split=request.validation_split,
            seed=request.seed,
        )
        (run_dir / "spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
        job: TrainJob = self.manager.new_record(
            self.name,
            job_id=job_id,
            title=f"Fine-tune {plan.model_id} on {info.name}",
            spec=spec,
            plan=plan,
            progress=TrainProgress(total=plan.total_steps),
        )
        return self.manager.submit(job)

    def run(self, run: JobRun[TrainJob]) -> dict[str, Any]:
        run.check_cancelled()  # cancelled while it waited for the run before it
        spec = run.job.spec
        run_dir = Path(spec.run_dir)
        if not (run_dir / "spec.json").is_file():
            raise TrainingFailedError("This run's folder is gone; start a new training job.", run_dir=str(run_dir))
        result: dict[str, Any] = {}
        started = time.monotonic()
        first_step: int | None = None

        def on_event(event: dict[str, Any]) -> None:
            nonlocal first_step
            kind = event["event"]
            job = run.job
            if kind == "status":
                run.update(status=event["status"])
            elif kind == "plan":
                run.update(progress=job.progress.model_copy(update={"total": event["total_steps"]}))
            elif kind == "resumed":  # the curve goes on from the checkpoint: later points are redone
                run.update(history=[p for p in job.history if p.step <= event["step"]])
            elif kind == "log":
                step, total = int(event["step"]), int(event["total_steps"] or 0) or job.progress.total
                if first_step is None and step > 0:
                    first_step = step
                point = TrainPoint(
                    step=step,
                    epoch=event["epoch"],
                    loss=event.get("loss"),
                    eval_loss=event.get("eval_loss"),
                    learning_rate=event.get("learning_rate"),
                )
                history = list(job.history)
                if history and history[-1].step == step:  # the train log and the eval of one step: one point
                    merged = {k: v for k, v in point.model_dump().items() if v is not None}
                    history[-1] = history[-1].model_copy(update=merged)
                else:
                    history.append(point)
                elapsed = time.monotonic() - started
                done_here = step - (first_step or step) + 1
                eta = (total - step) * elapsed / done_here if total and step and done_here > 0 else None
                previous = job.progress
                progress = TrainProgress(
                    completed=step,
                    total=total,
                    percent=round(100 * step / total, 2) if total else None,
                    eta_seconds=round(eta, 1) if eta is not None else None,
                    epoch=event["epoch"],
                    loss=event.get("loss") if event.get("loss") is not None else previous.loss,
                    eval_loss=event.get("eval_loss") if event.get("eval_loss") is not None else previous.eval_loss,
                    learning_rate=event.get("learning_rate") or previous.learning_rate,
                    tokens_per_second=event.get("tokens_per_second") or previous.tokens_per_second,
                )
                run.update(progress=progress, history=history)
            elif kind == "done":
                result.update(event)

        try:
            run_worker(run, "train", run_dir, on_event)
        except InsufficientMemoryError as exc:
            raise InsufficientMemoryError(
                f"Training ran out of memory on {spec.device} at batch size {spec.batch_size} with sequences of up "
                f"to {run.job.plan.longest_example_tokens} tokens. Start a new job with a smaller batch_size or "
                "max_seq_length (POST /training/plan shows what fits).",
                **exc.details,
            ) from None
        target = self.adapters_root / spec.job_id
        self.adapters_root.mkdir(parents=True, exist_ok=True)
        adapter = run_dir / "adapter"
        meta = json.loads((adapter / "orchard_adapter.json").read_text(encoding="utf-8"))
        meta["path"] = str(target)
        (adapter / "orchard_adapter.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        adapter.rename(target)  # one rename: the adapter is listed complete or not at all
        shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints are only for resuming this run
        done = run.job.progress.model_copy(update={"completed": result["steps"], "eta_seconds": 0, "percent": 100.0})
        return {
            "progress": done,
            "result": TrainResult(
                adapter_id=spec.job_id,
                adapter_path=str(target),
                steps=result["steps"],
                epochs=result["epochs"],
                train_loss=result.get("train_loss"),
                first_eval_loss=result.get("first_eval_loss") or _first_eval(run.job.history),
                eval_loss=result.get("eval_loss"),
                runtime_seconds=round(time.monotonic() - started, 2),
                train_seconds=round(result["train_seconds"], 3),
                peak_memory_gb=result.get("peak_memory_gb"),
                samples=[SampleAnswer(**s) for s in result.get("samples", [])],
            ),
        }

    def forget(self, job: TrainJob) -> None:
        self.purge(job)  # checkpoints of a job no longer listed could never be resumed

    def purge(self, job: TrainJob) -> int:
        run_dir = Path(job.spec.run_dir)
        if not run_dir.is_dir():
            return 0
        freed = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
        shutil.rmtree(run_dir, ignore_errors=True)
        return freed


def _first_eval(history: list[TrainPoint]) -> float | None:
    return next((p.eval_loss for p in history if p.eval_loss is not None), None)
