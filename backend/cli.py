"""The ``orchard`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from backend import __version__


def _is_loopback_bind(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.config import get_settings

    settings = get_settings()
    # uvicorn configures its own loggers only; Orchard's (warm-up, downloads, loads) go to stderr the same way.
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    host = args.host or settings.host
    port = args.port or settings.port
    if not _is_loopback_bind(host) and settings.api_key is None and not settings.allow_remote_without_key:
        print(
            f"orchard: refusing to listen on {host}, where other machines can reach it, without an API key. Set "
            "ORCHARD_API_KEY (clients send 'Authorization: Bearer <key>'), or ORCHARD_ALLOW_REMOTE_WITHOUT_KEY=true "
            "if the network is yours alone.",
            file=sys.stderr,
        )
        return 2
    uvicorn.run("backend.main:app", host=host, port=port, reload=args.reload, log_level=settings.log_level)
    return 0


def _pull(args: argparse.Namespace) -> int:
    """Download a model with a progress bar; Ctrl-C cancels and keeps the partial files, so a rerun resumes."""
    import time
    from pathlib import Path

    from pydantic import SecretStr
    from tqdm import tqdm

    from backend.config import get_settings
    from backend.errors import StudioError
    from backend.schemas.job_base import ACTIVE_STATUSES
    from backend.schemas.jobs import DownloadJob, DownloadRequest
    from backend.services.downloads import DownloadKind
    from backend.services.job_store import JobStore
    from backend.services.jobs import JobManager
    from backend.services.model_service import ModelService

    settings = get_settings()
    settings.ensure_dirs()
    # A job store of its own: the server's database is the server's (it would mark its running jobs interrupted).
    manager = JobManager(settings, JobStore(Path(":memory:")))
    downloads = DownloadKind(settings, ModelService(settings))
    manager.register(downloads)
    request = DownloadRequest(
        model_id=args.model_id,
        revision=args.revision,
        access_token=SecretStr(args.token) if args.token else None,
        load=False,
        force=args.force,
    )
    try:
        job: DownloadJob = downloads.start(request)
    except StudioError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    bar = tqdm(desc=args.model_id, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True)
    try:
        while job.status in ACTIVE_STATUSES:
            time.sleep(0.2)
            job = manager.get(job.id, kind="download")  # type: ignore[assignment]
            bar.total = job.progress.total
            bar.n = job.progress.completed
            bar.set_postfix_str("stalled" if job.progress.stalled else job.status, refresh=True)
    except KeyboardInterrupt:
        manager.cancel(job.id)
        bar.close()
        print(f"Cancelled. Run `orchard pull {args.model_id}` again to resume.", file=sys.stderr)
        return 130
    bar.close()
    if job.status == "ready":
        print(job.path)
        return 0
    message = job.error.message if job.error else job.status
    print(f"error: {message}", file=sys.stderr)
    return 1


def _train(args: argparse.Namespace) -> int:
    """A LoRA fine-tune without the server, in this process: the training process the server's jobs run, so
    ``torchrun`` / ``accelerate launch -m backend.cli train ...`` runs it on several processes (DDP)."""
    import os
    from pathlib import Path

    from backend.config import get_settings
    from backend.schemas.training import LoraSpec, TrainSpec
    from backend.services.train_worker import Events, train
    from backend.utils.mac_optimization import MACOptimizer

    settings = get_settings()
    optimizer = MACOptimizer.from_settings(settings)
    device = args.device or optimizer.get_device()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model).resolve()
    spec = TrainSpec(
        job_id=out.name,
        name=args.name or out.name,
        model_id=model.name,
        model_path=str(model),
        dataset_id=Path(args.data).stem,
        dataset_name=Path(args.data).stem,
        rows_path=str(Path(args.data).resolve()),
        run_dir=str(out),
        device=device,
        dtype=args.dtype or ("float32" if device == "cpu" else optimizer.get_dtype(device)),
        epochs=args.epochs or settings.train_epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate or settings.train_learning_rate,
        batch_size=args.batch_size or settings.train_batch_size or 4,
        gradient_accumulation_steps=args.gradient_accumulation_steps or settings.train_gradient_accumulation_steps,
        max_seq_length=args.max_seq_length or settings.train_max_seq_length,
        lora=LoraSpec(
            r=args.lora_r or settings.lora_r,
            alpha=args.lora_alpha or settings.lora_alpha,
            dropout=settings.lora_dropout if args.lora_dropout is None else args.lora_dropout,
            target_modules=settings.lora_target_modules or "all-linear",
        ),
        validation_split=args.validation_split,
        seed=args.seed,
    )
    rank = int(os.environ.get("RANK", "0"))
    code = train(spec, Events(out, enabled=rank == 0))
    if rank == 0 and code == 0:
        print(f"adapter: {out / 'adapter'}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchard", description="Orchard: a local-first LLM studio.")
    parser.add_argument("--version", action="version", version=f"orchard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Start the API server (settings from the environment / .env).")
    serve.add_argument("--host", help="Bind address (default: ORCHARD_HOST, 127.0.0.1).")
    serve.add_argument("--port", type=int, help="Port (default: ORCHARD_PORT, 8000).")
    serve.add_argument("--reload", action="store_true", help="Restart on code changes (development).")
    serve.set_defaults(func=_serve)
    pull = commands.add_parser("pull", help="Download a model from the Hub with a progress bar (Ctrl-C cancels).")
    pull.add_argument("model_id", help="Hub model id, e.g. Qwen/Qwen2.5-0.5B.")
    pull.add_argument("--revision", help="Branch, tag or commit (default: main).")
    pull.add_argument("--token", help="Hub token for gated/private models (default: HF_TOKEN).")
    pull.add_argument("--force", action="store_true", help="Download even if it will not fit on disk.")
    pull.set_defaults(func=_pull)
    tune = commands.add_parser(
        "train",
        help="Fine-tune a local model with LoRA in this process (run it under torchrun or accelerate launch for DDP).",
    )
    tune.add_argument("--model", required=True, help="The model folder.")
    tune.add_argument("--data", required=True, help="A dataset file POST /datasets accepts (JSONL, JSON, CSV).")
    tune.add_argument("--out", required=True, help="The run folder: checkpoints, events.jsonl, adapter/.")
    tune.add_argument("--name", help="The adapter's name (default: the run folder's name).")
    tune.add_argument("--device", choices=["cpu", "cuda", "mps"], help="Default: the best one here.")
    tune.add_argument("--dtype", help="The base weights' dtype (default: float32 on CPU, else the device's).")
    tune.add_argument("--epochs", type=int)
    tune.add_argument("--max-steps", type=int)
    tune.add_argument("--learning-rate", type=float)
    tune.add_argument("--batch-size", type=int, help="Per process.")
    tune.add_argument("--gradient-accumulation-steps", type=int)
    tune.add_argument("--max-seq-length", type=int)
    tune.add_argument("--lora-r", type=int)
    tune.add_argument("--lora-alpha", type=int)
    tune.add_argument("--lora-dropout", type=float)
    tune.add_argument("--validation-split", type=float, default=0.1)
    tune.add_argument("--seed", type=int, default=42)
    tune.set_defaults(func=_train)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
