// Plausible API objects for tests; override what a test is about.
import type {
  CurrentModelResponse,
  DownloadCheck,
  DownloadJob,
  LoadJob,
  LocalModel,
  LocalModelsResponse,
  MemoryStats,
  ModelInfoResponse,
  ModelMetadata,
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
