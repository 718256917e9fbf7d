import { DataDir } from "../datadir/DataDir.ts";
import type { Settings } from "../config/settings.ts";
import { logger } from "../logger.ts";
import { ensureRegistered } from "../registration.ts";

const log = logger("agent");

export type RunSettings = Settings<"url" | "token" | "dataDir" | "logsEndpoint" | "proxy" | "logFormat" | "signing" | "requestTimeout">;

/** `agent run`: lock the data dir, register when needed, then run the agent's loops until a signal. */
export async function runAgent(settings: RunSettings): Promise<void> {
  const dataDir = new DataDir(settings.dataDir!);
  const lock = await dataDir.lock();
  try {
    const registered = await ensureRegistered({
      dataDir,
      url: settings.url,
      token: settings.token,
      signing: settings.signing,
      timeoutMs: settings.requestTimeout! * 1000,
    });
    log.info(`agent started for server ${registered.identity.serverId} (pid ${process.pid})`);
    await waitForSignal();
    await registered.client.close();
  } finally {
    lock.release();
  }
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      log.info(`received ${signal}, shutting down`);
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
