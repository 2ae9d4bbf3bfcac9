// One place that configures the generated client: same-origin requests, the API key when one is saved, and every
// failure as an ApiError carrying the API's own code and message (never "[object Object]").
import { getApiKey } from "./apiKey";
import { client } from "./generated/client.gen";
import type { ErrorResponse } from "./generated/types.gen";

export class ApiError extends Error {
  readonly status: number | null;
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(message: string, code: string, status: number | null, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

function isErrorResponse(body: unknown): body is ErrorResponse {
  if (typeof body !== "object" || body === null || !("error" in body)) return false;
  const error = (body as { error: unknown }).error;
  return typeof error === "object" && error !== null && typeof (error as { message?: unknown }).message === "string";
}

/** Turn whatever a request failed with into an ApiError. */
export function toApiError(error: unknown, response?: Response): ApiError {
  if (error instanceof ApiError) return error;
  const status = response?.status ?? null;
  if (isErrorResponse(error)) {
    const { code, message, ...details } = error.error;
    return new ApiError(message, code, status, details);
  }
  if (response === undefined) {
    if (error instanceof DOMException && error.name === "AbortError") return new ApiError("Cancelled.", "aborted", null);
    return new ApiError(
      "Cannot reach the Orchard server. Is it still running? Start it with scripts/start.",
      "network_error",
      null,
    );
  }
  const text = typeof error === "string" && error.trim() ? error.trim().slice(0, 300) : response.statusText;
  return new ApiError(`The server answered ${response.status}: ${text || "no details"}.`, "http_error", status);
}

/** A readable message for any error a query or mutation can hold. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return toApiError(error).message;
}

/** Send the saved key (read on every request, so saving or forgetting it applies at once). */
function addApiKey(request: Request): Request {
  const key = getApiKey();
  if (key && !request.headers.has("Authorization")) request.headers.set("Authorization", `Bearer ${key}`);
  return request;
}

function asApiError(error: unknown, response: Response | undefined): ApiError {
  return toApiError(error, response);
}

export function setUpClient(baseUrl = ""): void {
  client.setConfig({ baseUrl });
  // Idempotent: calling it again (tests) must not stack the interceptors.
  if (!client.interceptors.request.exists(addApiKey)) client.interceptors.request.use(addApiKey);
  if (!client.interceptors.error.exists(asApiError)) client.interceptors.error.use(asApiError);
}

/** Whether an error is the API refusing the request for want of the right key. */
export function isUnauthorized(error: unknown): error is ApiError {
  return error instanceof ApiError && error.status === 401;
}
