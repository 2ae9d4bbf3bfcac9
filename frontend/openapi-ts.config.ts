import { defineConfig } from "@hey-api/openapi-ts";

// The client is generated from the backend's schema: run scripts/gen-api after changing the API.
export default defineConfig({
  input: "./openapi.json",
  output: { path: "./src/api/generated", format: null, lint: null },
  plugins: ["@hey-api/typescript", "@hey-api/client-fetch", "@hey-api/sdk", "@tanstack/react-query"],
});
