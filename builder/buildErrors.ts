import { AgentError } from "../lib/errors.ts";

/** The build was cancelled (control plane, Ctrl-C, agent shutdown); never reported as a failure. */
export class BuildCancelledError extends AgentError {
  constructor(reason = "the build was cancelled") {
    super(reason);
  }
}

/** A build step failed; `step` names where, for the control plane's error text. */
export class BuildStepError extends AgentError {
  constructor(
    readonly step: "clone" | "plan" | "build" | "push",
    message: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(message, options);
  }
}
