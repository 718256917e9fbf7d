import { CommanderError } from "commander";
import { AgentError, ExitCode } from "../lib/errors.ts";
import { redact } from "../lib/redact.ts";
import { buildProgram } from "./program.ts";

/** Runs the CLI and maps every error to one line on stderr and a documented exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : ExitCode.ok;
  } catch (err) {
    return reportError(err);
  }
}

export function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return ExitCode.ok;
    return ExitCode.usage;
  }
  if (err instanceof AgentError) {
    process.stderr.write(`agent: ${redact(err.message)}\n`);
    if (err.hint) process.stderr.write(`hint: ${redact(err.hint)}\n`);
    return err.exitCode;
  }
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`agent: unexpected error (a bug, please report it): ${redact(text)}\n`);
  return ExitCode.failure;
}
