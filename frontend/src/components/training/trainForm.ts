// The training form's fields as typed (text, so "" means "the server's default"), checked with the bounds the API
// declares for TrainRequest, and turned into the request the plan and the start send.
import type { TrainRequest } from "../../api/queries";

export type NumberField =
  | "epochs"
  | "max_steps"
  | "learning_rate"
  | "batch_size"
  | "gradient_accumulation_steps"
  | "max_seq_length"
  | "lora_r"
  | "lora_alpha"
  | "lora_dropout"
  | "validation_split"
  | "seed";

export type TrainFields = { dataset_id: string; model_id: string; name: string } & Record<NumberField, string>;

export type FieldErrors = Partial<Record<keyof TrainFields, string>>;

type Rule = { integer: boolean; min: number; max?: number; above?: boolean; below?: boolean };

/** TrainRequest's bounds (backend/schemas/training.py), so a value the API would refuse is caught while typing. */
const RULES: Record<NumberField, Rule> = {
  epochs: { integer: true, min: 1, max: 1000 },
  max_steps: { integer: true, min: 1 },
  learning_rate: { integer: false, min: 0, above: true, max: 1 },
  batch_size: { integer: true, min: 1, max: 4096 },
  gradient_accumulation_steps: { integer: true, min: 1, max: 1024 },
  max_seq_length: { integer: true, min: 8, max: 131072 },
  lora_r: { integer: true, min: 1, max: 1024 },
  lora_alpha: { integer: true, min: 1 },
  lora_dropout: { integer: false, min: 0, max: 1, below: true },
  validation_split: { integer: false, min: 0, max: 0.5 },
  seed: { integer: true, min: 0 },
};

export function emptyFields(): TrainFields {
  return {
    dataset_id: "",
    model_id: "",
    name: "",
    epochs: "",
    max_steps: "",
    learning_rate: "",
    batch_size: "",
    gradient_accumulation_steps: "",
    max_seq_length: "",
    lora_r: "",
    lora_alpha: "",
    lora_dropout: "",
    validation_split: "",
    seed: "",
  };
}

function describe(rule: Rule): string {
  const kind = rule.integer ? "a whole number" : "a number";
  const low = rule.above ? `above ${rule.min}` : `at least ${rule.min}`;
  if (rule.max === undefined) return `${kind}, ${low}`;
  const high = rule.below ? `below ${rule.max}` : `at most ${rule.max}`;
  if (!rule.above && !rule.below) return `${kind} from ${rule.min} to ${rule.max}`;
  return `${kind}, ${low} and ${high}`;
}

/** A field's number (null when empty: the server's default), or what is wrong with it. */
export function parseNumber(name: NumberField, text: string): { value: number | null; error: string | null } {
  const trimmed = text.trim();
  if (trimmed === "") return { value: null, error: null };
  const rule = RULES[name];
  const value = Number(trimmed);
  const ok =
    Number.isFinite(value) &&
    (!rule.integer || Number.isInteger(value)) &&
    (rule.above ? value > rule.min : value >= rule.min) &&
    (rule.max === undefined || (rule.below ? value < rule.max : value <= rule.max));
  return ok ? { value, error: null } : { value: null, error: `Enter ${describe(rule)}, or leave it empty.` };
}

/** The request for these fields (only what is set: the server fills the rest), or the fields' errors. */
export function buildRequest(fields: TrainFields): { request: TrainRequest | null; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const values: Partial<Record<NumberField, number>> = {};
  for (const name of Object.keys(RULES) as NumberField[]) {
    const { value, error } = parseNumber(name, fields[name]);
    if (error) errors[name] = error;
    else if (value !== null) values[name] = value;
  }
  const name = fields.name.trim();
  if (name.length > 100) errors.name = "At most 100 characters.";
  if (!fields.dataset_id) errors.dataset_id = "Choose a dataset.";
  if (Object.keys(errors).length > 0) return { request: null, errors };

  const { lora_r: r, lora_alpha: alpha, lora_dropout: dropout, ...rest } = values;
  const lora = { ...(r !== undefined && { r }), ...(alpha !== undefined && { alpha }), ...(dropout !== undefined && { dropout }) };
  const request: TrainRequest = {
    dataset_id: fields.dataset_id,
    ...(fields.model_id && { model_id: fields.model_id }),
    ...(name && { name }),
    ...rest,
    ...(Object.keys(lora).length > 0 && { lora }),
  };
  return { request, errors };
}
