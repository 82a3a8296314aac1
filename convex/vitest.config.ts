import { defineConfig } from "vitest/config";

// convex-test runs the functions in Convex's edge runtime.
export default defineConfig({
  test: { environment: "edge-runtime", server: { deps: { inline: ["convex-test"] } } },
});
