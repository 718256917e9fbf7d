import { render } from "ink";
import { configureLogging } from "../../lib/logger.ts";
import type { DoctorSession } from "../../lib/doctor/DoctorSession.ts";
import { DoctorScreen } from "./DoctorScreen.tsx";
import { LogTail } from "./LogTail.ts";

/**
 * Whether the screen may use color. ink's chalk follows FORCE_COLOR but not NO_COLOR, so the
 * screen drops its colors itself: as in Node, a FORCE_COLOR other than 0/false wins, else a
 * non-empty NO_COLOR (no-color.org) turns color off, and so does FORCE_COLOR=0, or TERM=dumb.
 */
export function screenColor(env: Record<string, string | undefined>): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== "0" && force !== "false";
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  return env.TERM !== "dumb";
}

/** Shows the doctor screen on this terminal until the person quits (or, with --fix, until the fixes are done). */
export async function runDoctorScreen(session: DoctorSession, options: { autoFix: boolean; assumeYes: boolean; subtitle?: string }): Promise<void> {
  const logs = new LogTail();
  // While ink owns the terminal a stray stderr line would tear the frame; the screen shows the last lines instead.
  configureLogging({ sink: logs });
  const app = render(
    <DoctorScreen session={session} autoFix={options.autoFix} assumeYes={options.assumeYes} logs={logs} subtitle={options.subtitle} color={screenColor(process.env)} />,
    { interactive: true, exitOnCtrlC: true },
  );
  try {
    await app.waitUntilExit();
  } finally {
    configureLogging({ sink: { write: (line) => process.stderr.write(line + "\n") } });
  }
}
