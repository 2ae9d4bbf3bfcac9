// Plausible API objects for tests; override what a test is about.
import type {
  AdapterInfo,
  CurrentModelResponse,
  DatasetDetail,
  DatasetInfo,
  DatasetPreview,
  DownloadCheck,
  DownloadJob,
  LoadJob,
  LocalModel,
  LocalModelsResponse,
  MemoryStats,
  ModelInfoResponse,
  MergeJob,
  ModelMetadata,
  TrainJob,
  TrainPlan,
} from "../api/queries";

export function memory(overrides: Partial<MemoryStats> = {}): MemoryStats {
  return {
    accelerator: null,
    device: "cpu",
    device_available_gb: 9.5,
    process_rss_gb: 1.2,
    safety_margin_gb: 1,
    system_available_gb: 10.5,
    system_total_gb: 16,
    system_used_percent: 34,
    ...overrides,
  };
}

export function metadata(overrides: Partial<ModelMetadata> = {}): ModelMetadata {
  return {
    model_id: "tiny-gpt2",
    architecture: "GPT2LMHeadModel",
    model_type: "gpt2",
    context_length: 1024,
    device: "cpu",
    dtype: "float32",
    estimated_memory_gb: 0.6,
    measured_memory_gb: 0.5,
    has_chat_template: true,
    load_seconds: 1.234,
    loaded_at: "2025-01-02T10:00:00Z",
    num_parameters: 124_439_808,
    path: "/home/me/.orchard/models/tiny-gpt2",
    source: "local",
    vocab_size: 50257,
    ...overrides,
  };
}

export function current(overrides: Partial<CurrentModelResponse> = {}): CurrentModelResponse {
  return {
    activity: "idle",
    generations: 0,
    loaded: false,
    loading: null,
    loading_job: null,
    memory: memory(),
    metadata: null,
    ...overrides,
  };
}

export function localModel(overrides: Partial<LocalModel> = {}): LocalModel {
  return {
    id: "tiny-gpt2",
    architecture: "GPT2LMHeadModel",
    model_type: "gpt2",
    complete: true,
    format: "safetensors",
    loaded: false,
    modified_at: "2025-01-01T12:00:00Z",
    num_parameters: 124_439_808,
    path: "/home/me/.orchard/models/tiny-gpt2",
    problems: [],
    size_bytes: 548_000_000,
    source: "local",
    ...overrides,
  };
}

export function localModels(models: LocalModel[]): LocalModelsResponse {
  return { models, models_dir: "/home/me/.orchard/models", hf_cache_dir: "/home/me/.cache/huggingface/hub" };
}

/** A download job, downloading (42% of 1 GB). */
export function job(overrides: Partial<DownloadJob> = {}): DownloadJob & { kind: "download" } {
  const modelId = overrides.model_id ?? "org/tiny";
  return {
    id: "job-1",
    title: `Download ${modelId}`,
    model_id: modelId,
    revision: null,
    status: "downloading",
    phases: ["queued", "resolving", "downloading", "verifying", "loading"],
    load: true,
    progress: {
      completed: 420_000_000,
      total: 1_000_000_000,
      unit: "bytes",
      percent: 42,
      files_done: 2,
      files_total: 5,
      bytes_per_second: 12_500_000,
      eta_seconds: 46,
      stalled: false,
    },
    resumable: false,
    created_at: "2025-01-02T10:00:00Z",
    updated_at: "2025-01-02T10:00:30Z",
    ...overrides,
    kind: "download",
  };
}

/** A load job, loading tiny-gpt2's weights (120 of 290 tensors). */
export function loadJob(overrides: Partial<LoadJob> = {}): LoadJob & { kind: "load" } {
  const modelId = overrides.model_id ?? "tiny-gpt2";
  return {
    id: "load-1",
    title: `Load ${modelId}`,
    model_id: modelId,
    model_path: null,
    path: `/home/me/.orchard/models/${modelId}`,
    status: "loading",
    phases: ["queued", "preparing", "loading"],
    progress: { completed: 120, total: 290, unit: "tensors", percent: 41.38, files_done: 0, stalled: false },
    resumable: false,
    created_at: "2025-01-02T10:00:00Z",
    updated_at: "2025-01-02T10:00:02Z",
    ...overrides,
    kind: "load",
  };
}

export function info(overrides: Partial<ModelInfoResponse> = {}): ModelInfoResponse {
  return {
    model_id: "org/tiny",
    architecture: "LlamaForCausalLM",
    model_type: "llama",
    config: {},
    context_length: 2048,
    estimated_memory_gb: 0.6,
    files: [
      { path: "config.json", size: 700 },
      { path: "model.safetensors", size: 498_000_000 },
      { path: "tokenizer.json", size: 2_100_000 },
    ],
    memory: {
      fits: true,
      reason: "needs 0.60 GB at float32; 9.50 GB available on cpu",
      available_gb: 9.5,
      required_gb: 0.6,
      device: "cpu",
      dtype: "float32",
    },
    num_parameters: 135_000_000,
    parameters_by_dtype: { F32: 135_000_000 },
    revision: null,
    sha: "0123456789abcdef",
    total_size_bytes: 500_100_700,
    vocab_size: 32000,
    weight_format: "safetensors",
    weights_size_bytes: 498_000_000,
    ...overrides,
  };
}

export function check(overrides: Partial<DownloadCheck> = {}): DownloadCheck {
  const disk = "0.50 GB to fetch, 100.00 GB free on disk";
  const mem = "needs 0.60 GB at float32; 9.50 GB available on cpu";
  return {
    model_id: "org/tiny",
    revision: null,
    commit: "0123456789abcdef",
    bytes_cached: 0,
    bytes_to_fetch: 500_100_700,
    bytes_total: 500_100_700,
    device: "cpu",
    dtype: "float32",
    disk_free_bytes: 100_000_000_000,
    files_total: 3,
    fits: true,
    fits_disk: true,
    fits_memory: true,
    disk_reason: disk,
    memory_reason: mem,
    reason: `disk: ${disk}; memory: ${mem}`,
    memory_available_gb: 9.5,
    memory_required_gb: 0.6,
    num_parameters: 135_000_000,
    ...overrides,
  };
}

export function dataset(overrides: Partial<DatasetInfo> = {}): DatasetInfo {
  return {
    id: "ds-1",
    name: "codes",
    format: "jsonl",
    shape: "chat",
    num_examples: 48,
    created_at: "2025-01-02T09:00:00Z",
    source_filename: "codes.jsonl",
    source_bytes: 9_600,
    ...overrides,
  };
}

/** A dataset's detail with a model loaded: token statistics, a histogram, two rows over max_seq_length. */
export function datasetDetail(overrides: Partial<DatasetDetail> = {}): DatasetDetail {
  return {
    ...dataset(),
    statistics: {
      num_examples: 48,
      characters: { min: 40, max: 62, mean: 51.5, total: 2472 },
      duplicates: 1,
      no_trainable_tokens: 0,
      tokens: {
        model_id: "tiny-llama",
        chat_template: "model",
        max_seq_length: 512,
        min: 20,
        max: 600,
        mean: 40.2,
        total: 1930,
        histogram: [
          { start: 20, end: 80, count: 40 },
          { start: 80, end: 300, count: 6 },
          { start: 300, end: 601, count: 2 },
        ],
        over_max_seq_length: 2,
        unrenderable: 0,
        kept_examples: 46,
        policy: "drop",
        policy_note: "Rows over max_seq_length are dropped from training, not truncated.",
      },
      tokens_reason: null,
    },
    ...overrides,
  };
}

export function preview(overrides: Partial<DatasetPreview> = {}): DatasetPreview {
  return {
    dataset_id: "ds-1",
    model_id: "tiny-llama",
    chat_template: "model",
    total: 48,
    rows: [
      {
        index: 0,
        num_tokens: 21,
        text: "<|user|>\nWhat is the code for apple?</s>\n<|assistant|>\nThe code for apple is elppa.</s>\n",
        segments: [
          { text: "<|user|>\nWhat is the code for apple?</s>\n<|assistant|>\n", trained: false },
          { text: "The code for apple is elppa.</s>\n", trained: true },
        ],
        warning: null,
      },
    ],
    ...overrides,
  };
}

export function plan(overrides: Partial<TrainPlan> = {}): TrainPlan {
  return {
    model_id: "tiny-llama",
    model_path: "/home/me/.orchard/models/tiny-llama",
    dataset_id: "ds-1",
    device: "cpu",
    dtype: "float32",
    num_parameters: 1_200_000,
    trainable_parameters: 24_576,
    batch_size: 8,
    proposed_batch_size: 16,
    gradient_accumulation_steps: 1,
    max_seq_length: 512,
    longest_example_tokens: 31,
    train_examples: 38,
    eval_examples: 10,
    dropped_examples: 0,
    total_steps: 150,
    memory: {
      runtime_gb: 0.75,
      weights_gb: 0.0048,
      adapter_gb: 0.0001,
      gradients_gb: 0.0001,
      optimizer_gb: 0.0002,
      activations_gb: 0.0153,
      total_gb: 0.7705,
    },
    available_gb: 9.5,
    loaded_model_gb: 0,
    fits: true,
    reason: "needs about 0.77 GB on cpu (float32 weights, batch 8 of up to 31 tokens); 9.50 GB free",
    ...overrides,
  };
}

/** A training job, training (step 60 of 150), with a loss curve so far. */
export function trainJob(overrides: Partial<TrainJob> = {}): TrainJob & { kind: "train" } {
  return {
    id: "train-1",
    title: "Fine-tune tiny-llama on codes",
    status: "training",
    phases: ["queued", "preparing", "training", "saving"],
    spec: {
      job_id: "train-1",
      name: "codes-adapter",
      model_id: "tiny-llama",
      model_path: "/home/me/.orchard/models/tiny-llama",
      dataset_id: "ds-1",
      dataset_name: "codes",
      rows_path: "/home/me/.orchard/outputs/runs/train-1/rows.jsonl",
      run_dir: "/home/me/.orchard/outputs/runs/train-1",
      device: "cpu",
      dtype: "float32",
      epochs: 30,
      max_steps: null,
      learning_rate: 0.01,
      batch_size: 8,
      gradient_accumulation_steps: 1,
      max_seq_length: 512,
      lora: { r: 16, alpha: 32, dropout: 0, target_modules: "all-linear" },
      validation_split: 0.2,
      seed: 42,
      samples: 3,
    },
    plan: plan(),
    progress: {
      unit: "steps",
      completed: 60,
      total: 150,
      percent: 40,
      epoch: 12,
      loss: 0.82,
      eval_loss: 0.95,
      learning_rate: 0.006,
      tokens_per_second: 1520,
      eta_seconds: 45,
    },
    history: [
      { step: 0, epoch: 0, eval_loss: 2.4 },
      { step: 10, epoch: 2, loss: 2.1, learning_rate: 0.0093 },
      { step: 20, epoch: 4, loss: 1.6, eval_loss: 1.7, learning_rate: 0.0087 },
      { step: 60, epoch: 12, loss: 0.82, eval_loss: 0.95, learning_rate: 0.006 },
    ],
    resumable: false,
    worker_pid: 4242,
    created_at: "2025-01-02T10:00:00Z",
    updated_at: "2025-01-02T10:01:00Z",
    ...overrides,
    kind: "train",
  };
}

export function adapter(overrides: Partial<AdapterInfo> = {}): AdapterInfo {
  return {
    id: "train-1",
    name: "codes-adapter",
    path: "/home/me/.orchard/outputs/adapters/train-1",
    base_model_id: "tiny-llama",
    base_model_path: "/home/me/.orchard/models/tiny-llama",
    base_architecture: "LlamaForCausalLM",
    dataset_id: "ds-1",
    dataset_name: "codes",
    lora: { r: 16, alpha: 32, dropout: 0, target_modules: "all-linear" },
    chat_template: "{% for message in messages %}...{% endfor %}",
    eos_token: "</s>",
    steps: 150,
    train_loss: 0.05,
    eval_loss: 0.12,
    size_bytes: 410_000,
    created_at: "2025-01-02T10:03:00Z",
    job_id: "train-1",
    ...overrides,
  };
}

/** A merge job, merging. */
export function mergeJob(overrides: Partial<MergeJob> = {}): MergeJob & { kind: "merge" } {
  return {
    id: "merge-1",
    title: "Merge codes-adapter into tiny-llama-codes",
    adapter_id: "train-1",
    name: "tiny-llama-codes",
    status: "merging",
    phases: ["queued", "preparing", "merging", "saving"],
    spec: {
      job_id: "merge-1",
      adapter_path: "/home/me/.orchard/outputs/adapters/train-1",
      base_model_path: "/home/me/.orchard/models/tiny-llama",
      output_dir: "/home/me/.orchard/models/.tmp-merge-merge-1",
    },
    progress: {},
    resumable: false,
    created_at: "2025-01-02T10:05:00Z",
    updated_at: "2025-01-02T10:05:01Z",
    ...overrides,
    kind: "merge",
  };
}
