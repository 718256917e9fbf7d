import { Command } from "commander";
import { buildCommand } from "./commands/build.ts";
import { doctorCommand } from "./commands/doctor.ts";
import { reconcileCommand } from "./commands/reconcile.ts";
import { runCommand } from "./commands/run.ts";
import { exitOnSignal } from "../lib/shutdownSignals.ts";
import { versionLine } from "../lib/buildInfo.ts";

/**
 * The command table: one file per command under cli/commands, registered here. `stopsGracefully`:
 * on SIGTERM/SIGINT the command finishes what is in flight (lib/shutdownSignals); the others exit.
 */
const COMMANDS: Array<{ make: () => Command; stopsGracefully: boolean }> = [
  { make: runCommand, stopsGracefully: true },
  { make: reconcileCommand, stopsGracefully: true },
  { make: buildCommand, stopsGracefully: true },
  { make: doctorCommand, stopsGracefully: false },
];

export function buildProgram(): Command {
  const program = new Command("agent")
    .description("Techulus node agent: makes this server match the control plane's expected state")
    .version(versionLine(), "-V, --version", "print the agent version and the git commit it was built from")
    .showHelpAfterError("(run agent --help for usage)")
    .configureOutput({ outputError: (text, write) => write(text) })
    .exitOverride();
  for (const { make, stopsGracefully } of COMMANDS) {
    const cmd = make();
    if (!stopsGracefully) cmd.hook("preAction", () => exitOnSignal());
    cmd.exitOverride();
    cmd.configureOutput({ outputError: (text, write) => write(text) });
    program.addCommand(cmd);
  }
  program.addHelpText(
    "after",
    `
Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 drift remains (reconcile --once),
4 the data dir is locked by another agent, 5 stopped by SIGTERM/SIGINT before the work was done.
Settings: flags > environment (AGENT_*) > config file (--config, AGENT_CONFIG) > defaults.`,
  );
  return program;
}
