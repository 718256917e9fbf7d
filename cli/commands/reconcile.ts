import { Command } from "commander";

export function reconcileCommand(): Command {
  return new Command("reconcile").description("one reconcile pass: make this server match the expected state, then exit").option("--once", "run one pass and exit");
}
