import { Command, Option } from "commander";
import { SETTINGS, resolveSettings, type SettingKey, type Settings } from "../lib/config/settings.ts";
import { configureLogging, logger } from "../lib/logger.ts";

/** Adds the flags of the given settings (plus --config) to a command. */
export function addSettingOptions(cmd: Command, keys: readonly SettingKey[]): Command {
  cmd.addOption(new Option("--config <file>", "JSON config file (default /etc/techulus-agent/agent.json when present)").env("AGENT_CONFIG"));
  for (const key of keys) {
    const s = SETTINGS[key];
    const defaultText = s.default === undefined ? "" : ` (default ${JSON.stringify(s.default)})`;
    const option = new Option(s.flag, `${s.description}${defaultText} [env ${s.env}]`);
    // Environment and defaults are applied by resolveSettings so precedence stays in one place.
    option.attributeName = () => key;
    cmd.addOption(option);
  }
  return cmd;
}

/** Resolves the settings of a command (flags > env > file > defaults), applies the log format and logs what is wrong with the config file. */
export function settingsFor<K extends SettingKey>(cmd: Command, keys: readonly K[]): Settings<K> {
  const opts = cmd.opts() as Record<string, unknown>;
  const settings = resolveSettings(keys, { flags: opts, env: process.env, configFile: opts.config as string | undefined });
  const format = (settings as Record<string, unknown>).logFormat;
  if (format === "text" || format === "json") configureLogging({ format });
  for (const warning of settings.configWarnings ?? []) logger("config").warn(warning);
  return settings;
}
