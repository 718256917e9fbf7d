import { Command } from "commander";
import { BuildCancelledError, BuildStepError } from "../../builder/buildErrors.ts";
import { BUILDER_SETTINGS, builderOptionsFrom } from "../../builder/builderOptions.ts";
import { runClaimedBuild } from "../../builder/BuildPoller.ts";
import { checkCiRequest, runCiBuild } from "../../builder/ciBuild.ts";
import type { BuildTerminal } from "../../builder/progress/BuildTerminal.ts";
import { PlainBuildTerminal } from "../../builder/progress/PlainBuildTerminal.ts";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { AgentError, ExitCode, UsageError, errorMessage } from "../../lib/errors.ts";
import { logger } from "../../lib/logger.ts";
import type { LogShipper } from "../../lib/logs/LogShipper.ts";
import { logShipperFor } from "../../lib/logs/logShipperFor.ts";
import { redact } from "../../lib/redact.ts";
import { onShutdown } from "../../lib/shutdownSignals.ts";
import { ensureRegistered } from "../../lib/registration.ts";
import { printJson, printResult } from "../output.ts";
import { addSettingOptions, settingsFor } from "../settingsOptions.ts";

const SETTINGS = [
  ...BUILDER_SETTINGS,
  "insecureRegistries",
  "githubAppId",
  "githubPrivateKeyFile",
  "githubInstallationId",
  "githubApiUrl",
  "githubUrl",
  "logsEndpoint",
  "logFormat",
  "dataDir",
  "url",
  "signing",
  "requestTimeout",
] as const;

const CI_ONLY = ["repo", "ref", "image", "source", "dockerfile", "cacheKey"] as const;
const log = logger("build");

export function buildCommand(): Command {
  const cmd = new Command("build")
    .option("--repo <owner/name>", "GitHub repository to clone")
    .option("--ref <sha|branch>", "exact commit (full sha) or branch to build (default: the tip of main)")
    .option("--image <registry/name:tag>", "image to build and push")
    .option("--source <dir>", "build this local folder instead of cloning")
    .option("--dockerfile <path>", "Dockerfile inside the source (default Dockerfile; without one, Railpack plans the build)")
    .option("--secret <name>", "build secret read from the environment variable NAME (repeatable); never give the value", collect, [] as string[])
    .option("--cache-key <key>", "cache isolation key (default: owner-name of the repository)")
    .option("--build-id <id>", "claim and run this pending build of the control plane (uses the registered identity of --data-dir)")
    .option("--json", "print the result (or the failure) as JSON on stdout");
  addSettingOptions(cmd, SETTINGS);
  cmd.addHelpText(
    "after",
    `
Examples:
  agent build --repo acme/api --ref 4f1c…e9 --image registry.example.com/acme/api:4f1c \\
    --github-app-id 12345 --github-private-key-file app.pem --secret NPM_TOKEN
  agent build --source . --image 127.0.0.1:5000/acme/api:dev --builder podman --insecure-registry 127.0.0.1:5000
  agent build --build-id 7d9e…   (one pending build from the control plane)

Prints the pushed image reference with its digest. Exit codes: 0 pushed, 1 the build failed,
2 usage error, 5 stopped by SIGTERM/SIGINT (the build is cancelled and cleaned up).`,
  );
  cmd.action(async (opts: Record<string, unknown>, command: Command) => {
    const settings = settingsFor(command, SETTINGS);
    const json = Boolean(opts.json);
    const aborter = new AbortController();
    const stopListening = onShutdown((signal) => {
      log.warn(`received ${signal}: stopping the build`);
      aborter.abort();
    });
    let shipper: LogShipper | undefined;
    try {
      const options = builderOptionsFrom(settings);
      if (opts.buildId !== undefined) {
        const given = CI_ONLY.filter((k) => opts[k] !== undefined);
        if (given.length > 0 || (opts.secret as string[]).length > 0) {
          throw new UsageError(`--build-id takes everything from the control plane; drop ${[...given.map(flagOf), ...((opts.secret as string[]).length ? ["--secret"] : [])].join(", ")}`);
        }
        const dataDir = DataDir.open(settings.dataDir!);
        if (!dataDir.hasIdentity()) {
          throw new UsageError(`--build-id needs a registered node, and ${dataDir.root} has no identity`, "register first with: agent run --url https://control-plane.example --token <token>");
        }
        const { identity, client } = await ensureRegistered({ dataDir, url: settings.url, signing: settings.signing, timeoutMs: settings.requestTimeout! * 1000 });
        const buildId = String(opts.buildId);
        const claim = await client.claimBuild(buildId);
        if (!claim) throw new AgentError(`build ${buildId} cannot be claimed: another agent claimed it, or it is not pending`);
        shipper = logShipperFor(settings.logsEndpoint);
        const outcome = await runClaimedBuild({
          client,
          claim,
          dataDir,
          encryptionKey: identity.encryptionKey,
          shipper,
          terminal: await terminalFor(`Building ${claim.imageUri} (build ${buildId})`, json, settings.logFormat),
          signal: aborter.signal,
          ...options,
        });
        await client.close();
        await closeShipper(shipper, settings.logsEndpoint);
        if (outcome.status !== "completed") {
          if (json) printJson({ ok: false, buildId, status: outcome.status, error: outcome.error });
          throw new AgentError(`build ${buildId} ${outcome.status === "cancelled" ? "was cancelled" : "failed"}: ${outcome.error}`, interruptedExit(aborter.signal));
        }
        const r = outcome.result!;
        if (json) printJson({ ok: true, buildId, image: r.image, digest: r.digest, reference: r.reference, commitSha: r.commitSha, builder: r.builder, durationMs: r.durationMs });
        else printResult(r.reference);
        return;
      }

      const plan = checkCiRequest({
        repo: opts.repo as string | undefined,
        ref: opts.ref as string | undefined,
        image: opts.image as string | undefined,
        source: opts.source as string | undefined,
        dockerfile: opts.dockerfile as string | undefined,
        cacheKey: opts.cacheKey as string | undefined,
        secretNames: opts.secret as string[],
        env: process.env,
        github: {
          appId: settings.githubAppId,
          privateKeyFile: settings.githubPrivateKeyFile,
          installationId: settings.githubInstallationId,
          apiUrl: settings.githubApiUrl!,
          url: settings.githubUrl,
        },
      });
      shipper = logShipperFor(settings.logsEndpoint);
      const terminal = await terminalFor(`Building ${plan.image}`, json, settings.logFormat);
      let result;
      try {
        result = await runCiBuild({ plan, options, terminal, shipper, signal: aborter.signal });
      } catch (err) {
        const cancelled = err instanceof BuildCancelledError || aborter.signal.aborted;
        await terminal.finish(cancelled ? "cancelled" : "failed", redact(errorMessage(err)));
        const lost = await closeShipper(shipper, settings.logsEndpoint);
        if (json && !(err instanceof UsageError)) {
          printJson({ ok: false, buildId: plan.buildId, status: cancelled ? "cancelled" : "failed", step: err instanceof BuildStepError ? err.step : undefined, error: redact(errorMessage(err)), logLinesLost: lost });
        }
        throw cancelled ? new AgentError("the build was cancelled", interruptedExit(aborter.signal)) : err;
      }
      await terminal.finish("completed", result.reference);
      const lost = await closeShipper(shipper, settings.logsEndpoint);
      if (json) {
        printJson({
          ok: true,
          buildId: result.buildId,
          image: result.image,
          digest: result.digest,
          reference: result.reference,
          commitSha: result.commitSha,
          builder: result.builder,
          durationMs: result.durationMs,
          logLines: result.logLines,
          logLinesLost: lost,
        });
      } else printResult(result.reference);
    } finally {
      stopListening();
    }
  });
  return cmd;
}

/** A build stopped by SIGTERM/SIGINT exits 5, like every command stopped by a signal. */
function interruptedExit(signal: AbortSignal): { exitCode?: ExitCode } {
  return signal.aborted ? { exitCode: ExitCode.interrupted } : {};
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function flagOf(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** The live view on a terminal; plain log lines for pipes, CI logs and --json. */
async function terminalFor(title: string, json: boolean, logFormat: string | undefined): Promise<BuildTerminal> {
  if (process.stderr.isTTY && !json && logFormat !== "json" && process.env.TERM !== "dumb") {
    const { InkBuildTerminal } = await import("../../builder/progress/InkBuildTerminal.tsx");
    return new InkBuildTerminal(title);
  }
  return new PlainBuildTerminal();
}

/** Flushes (bounded) and returns how many build log lines never reached the endpoint. */
async function closeShipper(shipper: LogShipper | undefined, endpoint: string | undefined): Promise<number> {
  if (!shipper || !endpoint) return 0;
  await shipper.close();
  const stats = shipper.stats();
  const lost = stats.dropped + stats.pending;
  if (lost > 0) log.warn(`${lost} build log line(s) could not be shipped to ${endpoint}`);
  return lost;
}

