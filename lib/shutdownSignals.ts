/**
 * SIGTERM and SIGINT for the whole process, installed before anything else is loaded so a signal
 * that arrives during start-up is never lost (nor handled by Node's default, exit 143).
 *
 * Commands that stop gracefully (`run`, `reconcile --once`, `build`) listen with `onShutdown`: the
 * first signal asks them to finish what is in flight; they have `SHUTDOWN_GRACE_MS` to do it, then
 * the process exits with `ExitCode.interrupted`. A second signal exits at once (128 + signal number).
 * Every other command calls `exitOnSignal()`, after which a signal simply ends the process.
 *
 * The handlers stay installed for the life of the process: with a listener present, the signal-exit
 * handler execa installs never re-raises the signal to kill the process behind the command's back.
 */
import { ExitCode } from "./errors.ts";
import { logger } from "./logger.ts";

const log = logger("agent");

type ShutdownSignal = "SIGTERM" | "SIGINT";
type Listener = (signal: ShutdownSignal) => void;

/** Podman's stop grace (10 s) plus a margin for removing, creating and starting the replacement. */
export const SHUTDOWN_GRACE_MS = 30_000;

const SIGNAL_NUMBERS: Record<ShutdownSignal, number> = { SIGINT: 2, SIGTERM: 15 };

let installed = false;
let graceful = true;
let received: ShutdownSignal | undefined;
const listeners = new Set<Listener>();
const lastWishes = new Set<() => void>();

export function installShutdownSignals(): void {
  if (installed) return;
  installed = true;
  process.on("SIGTERM", () => handle("SIGTERM"));
  process.on("SIGINT", () => handle("SIGINT"));
}

function handle(signal: ShutdownSignal): void {
  if (!graceful) exitNow(signal, `received ${signal}`);
  if (received !== undefined) exitNow(signal, `received ${signal} again while stopping: exiting now`);
  received = signal;
  log.info(`received ${signal}; finishing what is in flight (at most ${SHUTDOWN_GRACE_MS / 1000} s; send it again to exit now)`);
  // unref: a command that finishes sooner exits without waiting for this timer.
  setTimeout(() => {
    log.warn(`still busy ${SHUTDOWN_GRACE_MS / 1000} s after ${signal}; exiting with the operation in flight (Podman finishes it; the next pass checks it)`);
    process.exit(ExitCode.interrupted);
  }, SHUTDOWN_GRACE_MS).unref();
  for (const listener of listeners) listener(signal);
}

function exitNow(signal: ShutdownSignal, why: string): never {
  log.warn(why);
  for (const wish of lastWishes) wish();
  process.exit(128 + SIGNAL_NUMBERS[signal]);
}

/** The signal that asked this process to stop, if one did. */
export function shutdownRequested(): ShutdownSignal | undefined {
  return received;
}

/** Calls `listener` on the first signal (at once, if it already came); returns an unsubscribe. */
export function onShutdown(listener: Listener): () => void {
  listeners.add(listener);
  if (received !== undefined) {
    const signal = received;
    queueMicrotask(() => listeners.has(listener) && listener(signal));
  }
  return () => listeners.delete(listener);
}

/** Runs `fn` (synchronously) if a signal ends the process at once; returns an unsubscribe. */
export function beforeImmediateExit(fn: () => void): () => void {
  lastWishes.add(fn);
  return () => lastWishes.delete(fn);
}

/** Resolves on the first signal. */
export function shutdownSignal(): Promise<ShutdownSignal> {
  return new Promise((resolve) => {
    const off = onShutdown((signal) => {
      off();
      resolve(signal);
    });
  });
}

/** For commands with nothing to finish: a signal ends the process (and one that came already ends it now). */
export function exitOnSignal(): void {
  graceful = false;
  if (received !== undefined) exitNow(received, `received ${received}`);
}
