import { Command } from "commander";
import { BUILDER_SETTINGS } from "../../builder/builderOptions.ts";
import { NODE_SETTING_KEYS } from "../../lib/agent/nodeDrivers.ts";
import { runAgent } from "../../lib/agent/runAgent.ts";
import { addSettingOptions, settingsFor } from "../settingsOptions.ts";

const SETTINGS = [
  "url",
  "token",
  "dataDir",
  "logsEndpoint",
  "shipAgentLog",
  "logFormat",
  "signing",
  "requestTimeout",
  "pollInterval",
  "passTimeout",
  "workQueueInterval",
  "volumeArchiveKeep",
  "volumeArchiveDays",
  "buildPollInterval",
  ...NODE_SETTING_KEYS,
  ...BUILDER_SETTINGS,
] as const;

export function runCommand(): Command {
  const cmd = new Command("run");
  addSettingOptions(cmd, SETTINGS);
  cmd.action(async (_opts, command: Command) => {
    await runAgent(settingsFor(command, SETTINGS));
  });
  return cmd;
}
