import { Command } from "commander";
import { runAgent } from "../../lib/agent/runAgent.ts";
import { addSettingOptions, settingsFor } from "../settingsOptions.ts";

const SETTINGS = ["url", "token", "dataDir", "logsEndpoint", "proxy", "logFormat", "signing", "requestTimeout"] as const;

export function runCommand(): Command {
  const cmd = new Command("run").description("register on first start, then keep this server in sync with the control plane (runs until SIGTERM)");
  addSettingOptions(cmd, SETTINGS);
  cmd.action(async (_opts, command: Command) => {
    await runAgent(settingsFor(command, SETTINGS));
  });
  return cmd;
}
