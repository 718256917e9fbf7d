import { Command } from "commander";

export function doctorCommand(): Command {
  return new Command("doctor").description("check this host and the agent's view of the world, explain drift, propose fixes");
}
