import { Command } from "commander";
import { exitOnSignal } from "../lib/shutdownSignals.ts";
import { versionLine } from "../lib/buildInfo.ts";

/**
 * The command table: one file per command under cli/commands, wired here. Only the command being
 * run is loaded (with everything it imports); the others are listed by name and summary, so
 * `agent --help` and one command never pay for the rest. `stopsGracefully`: on SIGTERM/SIGINT
 * the command finishes what is in flight (lib/shutdownSignals); the others exit.
 */
interface CommandEntry {
  name: string;
  summary: string;
  load: () => Promise<Command>;
  stopsGracefully: boolean;
}

const COMMANDS: CommandEntry[] = [
  {
    name: "run",
    summary: "register on first start, then keep this server in sync with the control plane (runs until SIGTERM)",
    load: async () => (await import("./commands/run.ts")).runCommand(),
    stopsGracefully: true,
  },
  {
    name: "reconcile",
    summary: "one reconcile pass: make this server match the expected state, then exit (0 converged, 3 drift remains, 1 a change failed, 5 stopped by a signal)",
    load: async () => (await import("./commands/reconcile.ts")).reconcileCommand(),
    stopsGracefully: true,
  },
  {
    name: "build",
    summary: "clone, build and push a container image (CI mode, or one control-plane build with --build-id)",
    load: async () => (await import("./commands/build.ts")).buildCommand(),
    stopsGracefully: true,
  },
  {
    name: "doctor",
    summary: "check this host and the agent's view of the world, explain drift, propose fixes (exit 0: nothing failed, 1: a check failed)",
    load: async () => (await import("./commands/doctor.ts")).doctorCommand(),
    stopsGracefully: false,
  },
];

/**
 * zod's `z.config({ jitless: true })`, set before zod and any schema load (zod reads this global
 * when it starts, and each object schema when it is built): schemas validate without generating
 * and compiling a parser each, which costs a one-shot command more than it saves on the few
 * answers it parses. Validation is the same either way.
 */
function zodWithoutCodegen(): void {
  const g = globalThis as { __zod_globalConfig?: Record<string, unknown> };
  g.__zod_globalConfig = Object.assign(g.__zod_globalConfig ?? {}, { jitless: true });
}

/** The command argv asks for: its first word, or the one after `help`. */
export function commandNameOf(argv: readonly string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith("-"));
  return words[0] === "help" ? words[1] : words[0];
}

export async function buildProgram(argv: readonly string[]): Promise<Command> {
  const program = new Command("agent")
    .description("Techulus node agent: makes this server match the control plane's expected state")
    .version(versionLine(), "-V, --version", "print the agent version and the git commit it was built from")
    .showHelpAfterError("(run agent --help for usage)")
    .configureOutput({ outputError: (text, write) => write(text) })
    // Commands not loaded have no options yet; every command has some.
    .configureHelp({ subcommandTerm: (cmd) => `${cmd.name()} [options]` })
    .exitOverride();
  const wanted = commandNameOf(argv);
  if (COMMANDS.some((entry) => entry.name === wanted)) zodWithoutCodegen();
  for (const entry of COMMANDS) {
    const cmd = (entry.name === wanted ? await entry.load() : new Command(entry.name)).description(entry.summary);
    if (!entry.stopsGracefully) cmd.hook("preAction", () => exitOnSignal());
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
