import { probeBuildKit } from "../../builder/drivers/buildkitProbe.ts";
import { resultOf, type Check } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";

const START_IT = "start buildkitd (e.g. systemctl enable --now buildkit), or point --buildkit-host at a running one";

/** Whether the BuildKit daemon builds would use answers (`buildctl debug workers`), and its version. */
export const buildkitCheck: Check<DoctorContext> = {
  id: "host.buildkit",
  title: "BuildKit answers",
  async run(ctx) {
    const choice = ctx.settings.builder ?? "auto";
    const addr = ctx.settings.buildkitHost ?? "tcp://127.0.0.1:1234";
    if (choice === "podman") return resultOf(this, "skip", "this node builds with podman (--builder podman)");
    const buildctl = await ctx.which("buildctl");
    const required = choice === "buildkit";
    if (!buildctl) {
      if (required) return resultOf(this, "fail", "buildctl is not installed, and --builder buildkit builds with it", { fix: { description: "install BuildKit (buildctl and buildkitd) from https://github.com/moby/buildkit/releases" } });
      return resultOf(this, "skip", "buildctl is not installed: builds use podman (--builder auto)");
    }
    const probe = await probeBuildKit(addr, { buildctl });
    if (probe.state === "up") {
      const workers = `${probe.workers} worker${probe.workers === 1 ? "" : "s"}`;
      return resultOf(this, "ok", `BuildKit ${probe.version ?? "(version unknown)"} answers at ${addr} (${workers})`);
    }
    const why = probe.state === "down" ? probe.error : "buildctl is not installed";
    if (required) return resultOf(this, "fail", `no BuildKit daemon answers at ${addr} (${why}): every build fails (--builder buildkit)`, { fix: { description: START_IT } });
    return resultOf(this, "warn", `no BuildKit daemon answers at ${addr} (${why}): builds use podman (--builder auto)`, { fix: { description: START_IT } });
  },
};
