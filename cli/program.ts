import { Command } from "commander";
import pkg from "../package.json" with { type: "json" };
import { buildCommand } from "./commands/build.ts";
import { doctorCommand } from "./commands/doctor.ts";
import { reconcileCommand } from "./commands/reconcile.ts";
import { runCommand } from "./commands/run.ts";

/** The command table: one file per command under cli/commands, registered here. */
const COMMANDS: Array<() => Command> = [runCommand, reconcileCommand, buildCommand, doctorCommand];

export function buildProgram(): Command {
  const program = new Command("agent")
    .description("Techulus node agent: makes this server match the control plane's expected state")
    .version(pkg.version, "-V, --version", "print the agent version")
    .showHelpAfterError("(run agent --help for usage)")
    .configureOutput({ outputError: (text, write) => write(text) })
    .exitOverride();
  for (const make of COMMANDS) {
    const cmd = make();
    cmd.exitOverride();
    cmd.configureOutput({ outputError: (text, write) => write(text) });
    program.addCommand(cmd);
  }
  program.addHelpText(
    "after",
    `
Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 drift remains (reconcile --once),
4 the data dir is locked by another agent.
Settings: flags > environment (AGENT_*) > config file (--config, AGENT_CONFIG) > defaults.`,
  );
  return program;
}
