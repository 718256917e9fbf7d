import { chmodSync, statSync } from "node:fs";
import { DEFAULT_CONFIG_FILE, loadConfigFile } from "../config/settings.ts";
import { errorMessage } from "../errors.ts";
import { octalMode } from "../fs/fileMode.ts";
import { resultOf, type Check } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";

/** The config file the settings came from: nobody else may change it, nor read a secret in it. */
export const configFileCheck: Check<DoctorContext> = {
  id: "config.file",
  title: "config file private",
  async run(ctx) {
    const path = ctx.settings.configFile;
    if (!path) return resultOf(this, "skip", `no config file (--config, AGENT_CONFIG, or ${DEFAULT_CONFIG_FILE})`);
    let verdict;
    try {
      verdict = loadConfigFile(path).verdict;
    } catch (err) {
      return resultOf(this, "fail", errorMessage(err));
    }
    if (verdict.refusal) return resultOf(this, "fail", `${verdict.refusal}; the agent refuses to start with it`);
    if (verdict.warning) {
      return resultOf(this, "fail", verdict.warning, { fix: { description: `chmod 600 ${path}`, apply: async () => chmodSync(path, 0o600) } });
    }
    return resultOf(this, "ok", `${path} ${octalMode(statSync(path).mode)}`);
  },
};
