import { render } from "ink";
import { configureLogging } from "../../lib/logger.ts";
import type { DoctorSession } from "../../lib/doctor/DoctorSession.ts";
import { DoctorScreen } from "./DoctorScreen.tsx";
import { LogTail } from "./LogTail.ts";

/** Shows the doctor screen on this terminal until the person quits (or, with --fix, until the fixes are done). */
export async function runDoctorScreen(session: DoctorSession, options: { autoFix: boolean; assumeYes: boolean; subtitle?: string }): Promise<void> {
  const logs = new LogTail();
  // While ink owns the terminal a stray stderr line would tear the frame; the screen shows the last lines instead.
  configureLogging({ sink: logs });
  const app = render(<DoctorScreen session={session} autoFix={options.autoFix} assumeYes={options.assumeYes} logs={logs} subtitle={options.subtitle} />, {
    interactive: true,
    exitOnCtrlC: true,
  });
  try {
    await app.waitUntilExit();
  } finally {
    configureLogging({ sink: { write: (line) => process.stderr.write(line + "\n") } });
  }
}
