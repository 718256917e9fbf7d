#!/usr/bin/env bun
// Signals first: a SIGTERM that arrives while the rest of the program loads is kept, not fatal.
import { installShutdownSignals } from "../lib/shutdownSignals.ts";

installShutdownSignals();
const { main } = await import("./main.ts");
const code = await main(process.argv.slice(2));
process.exit(code);
