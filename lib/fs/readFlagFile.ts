import { readFileSync } from "node:fs";
import { errorMessage, UsageError } from "../errors.ts";

/** Reads a file a flag names; a missing or unreadable file is a usage error naming the flag. */
export function readFlagFile(flag: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
}

/** Parses JSON from a flag's file; `fail` makes the error (usage error for config, invalid input for state). */
export function parseFlagJson(flag: string, path: string, text: string, fail: (message: string) => Error = (m) => new UsageError(m)): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw fail(`${flag}: ${path} is not valid JSON: ${errorMessage(err)}`);
  }
}
