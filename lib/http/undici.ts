/**
 * The real undici from node_modules. Bun swaps the bare specifier "undici" for a partial built-in
 * shim (its Agent has no unix-socket support and no close()); the deep import bypasses the shim
 * and works under `bun test` and in the compiled binary alike.
 */
export { Agent, request, Pool, Client, errors } from "undici/index.js";
export type { Dispatcher } from "undici/index.js";
