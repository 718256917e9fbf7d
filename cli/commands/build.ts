import { Command } from "commander";

export function buildCommand(): Command {
  return new Command("build").description("clone, build and push a container image (CI mode or one control-plane build)");
}
