// The app's QueryClient: what is retried, and one place that notices the API asking for its key (a 401 from any
// query or mutation), so the app asks once instead of every card on its own.
import { MutationCache, QueryCache, QueryClient } from "@tanstack/react-query";
import { clearKeyProblem, reportUnauthorized } from "./apiKey";
import { isUnauthorized } from "./client";

function onError(error: unknown): void {
  if (isUnauthorized(error)) reportUnauthorized(error.message);
}

/** Every API route needs the key when the server has one: an answer means the key is fine now (saved in another
 * tab, or the server restarted without one), so the prompt can go. */
function onSuccess(): void {
  clearKeyProblem();
}

export function createQueryClient(): QueryClient {
  return new QueryClient({
    queryCache: new QueryCache({ onError, onSuccess }),
    mutationCache: new MutationCache({ onError, onSuccess }),
    defaultOptions: {
      queries: {
        staleTime: 2_000,
        // 4xx answers are final; only retry what may be transient.
        retry: (count, error) => count < 2 && !(error instanceof Error && "status" in error && Number(error.status) < 500),
      },
    },
  });
}
