#!/usr/bin/env bun
// Signals first: a SIGTERM that arrives while the rest of the program loads is kept, not fatal.
import { installShutdownSignals } from "../lib/shutdownSignals.ts";
import { versionLine } from "../lib/buildInfo.ts";

async function start(argv: string[]): Promise<never> {
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
    process.stdout.write(`${versionLine()}\n`);
    process.exit(0);
  }
  installShutdownSignals();
  const { main } = await import("./main.ts");
  process.exit(await main(argv));
}

void start(process.argv.slice(2));
