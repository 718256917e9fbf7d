/** Exit codes of every command; the README's table mirrors this one. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  driftRemains: 3,
  locked: 4,
  /** Stopped by SIGTERM/SIGINT before the work was done (what was in flight was finished first). */
  interrupted: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error meant for a person: a message, an optional hint, and the exit code the CLI uses. */
export class AgentError extends Error {
  readonly exitCode: ExitCode;
  readonly hint?: string;
  constructor(message: string, options: { exitCode?: ExitCode; hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? ExitCode.failure;
    this.hint = options.hint;
  }
}

/** Wrong flag, environment variable, config file or argument: exit code 2. */
export class UsageError extends AgentError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: ExitCode.usage, hint });
  }
}

/** Another agent holds the data-dir lock. */
export class LockedError extends AgentError {
  readonly holderPid?: number;
  constructor(message: string, holderPid?: number) {
    super(message, { exitCode: ExitCode.locked, hint: "stop the other agent or wait for it to finish" });
    this.holderPid = holderPid;
  }
}

/** Input from outside (expected state, a work item, a response) that fails validation. */
export class InvalidInputError extends AgentError {}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
