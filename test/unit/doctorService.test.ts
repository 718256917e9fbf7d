import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { agentLogResult, dropInText, parseSystemctlShow, serviceChecks, unitFindings } from "../../lib/doctor/serviceChecks.ts";
import { doctorContext, hostFiles } from "../support/doctorFixtures.ts";

const temps: string[] = [];
function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), "doctor-service-"));
  temps.push(dir);
  return dir;
}
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

const unitCheck = serviceChecks.find((c) => c.id === "service.unit")!;
const logCheck = serviceChecks.find((c) => c.id === "service.log")!;

const SHOW_GOOD = `LoadState=loaded
KillMode=process
Restart=always
UnitFileState=enabled
FragmentPath=/etc/systemd/system/techulus-agent.service
DropInPaths=
`;

describe("service.unit: pure parts", () => {
  test("systemctl show output is read as key=value (values may hold '=')", () => {
    const props = parseSystemctlShow(`${SHOW_GOOD}Environment=AGENT_CONFIG=/etc/techulus-agent/agent.json\n`);
    expect(props.get("KillMode")).toBe("process");
    expect(props.get("DropInPaths")).toBe("");
    expect(props.get("Environment")).toBe("AGENT_CONFIG=/etc/techulus-agent/agent.json");
  });

  test("the installer's settings are fine", () => {
    expect(unitFindings(parseSystemctlShow(SHOW_GOOD))).toEqual({ status: "ok", problems: [], dropIn: false, enable: false, masked: false });
  });

  test("KillMode other than process fails (a stop kills the containers); Restart and a disabled unit warn", () => {
    const kill = unitFindings(parseSystemctlShow(SHOW_GOOD.replace("KillMode=process", "KillMode=control-group")));
    expect(kill.status).toBe("fail");
    expect(kill.dropIn).toBe(true);
    expect(kill.enable).toBe(false);
    expect(kill.problems).toEqual(["KillMode=control-group: stopping or restarting the agent kills conmon and with it every container (KillMode=process stops the agent alone)"]);

    const soft = unitFindings(parseSystemctlShow(SHOW_GOOD.replace("Restart=always", "Restart=no").replace("UnitFileState=enabled", "UnitFileState=disabled")));
    expect(soft.status).toBe("warn");
    expect(soft.dropIn).toBe(true);
    expect(soft.enable).toBe(true);
    expect(soft.problems).toHaveLength(2);
    expect(soft.problems[1]).toBe("UnitFileState=disabled: the agent does not start at boot");

    const masked = unitFindings(parseSystemctlShow(SHOW_GOOD.replace("UnitFileState=enabled", "UnitFileState=masked")));
    expect(masked).toMatchObject({ status: "warn", enable: false, masked: true, dropIn: false });
  });

  test("the drop-in sets both settings in [Service]", () => {
    expect(dropInText()).toContain("[Service]\nKillMode=process\nRestart=always\n");
  });

  test("without systemd as PID 1 the unit check is skipped, saying so", async () => {
    const dir = temp();
    const ctx = doctorContext(join(dir, "data"), { paths: hostFiles(dir, {}) });
    const result = await unitCheck.run(ctx);
    expect(result.status).toBe("skip");
    expect(result.detail).toContain("systemd is not PID 1 here");
  });
});

describe("service.log", () => {
  test("verdicts: no errors is ok, errors warn with the count and the last error lines, nothing to read is a skip", () => {
    expect(agentLogResult({ kind: "unavailable", reason: "journalctl is not installed" })).toEqual({ status: "skip", detail: "journalctl is not installed" });
    expect(agentLogResult({ kind: "ok", source: "the file x", lines: [], errors: 0, warnings: 0 }).status).toBe("skip");
    const ok = agentLogResult({ kind: "ok", source: "the file x", lines: ["[agent] started", "[podman] warn: slow"], errors: 0, warnings: 1 });
    expect(ok).toEqual({ status: "ok", detail: "0 errors and 1 warning in the last 2 lines of the file x; the last one:\n  [podman] warn: slow" });
    const lines = Array.from({ length: 8 }, (_, i) => `[reconcile] error: pass ${i} failed`);
    const bad = agentLogResult({ kind: "ok", source: "the file x", lines: ["[agent] started", ...lines], errors: 8, warnings: 0 });
    expect(bad.status).toBe("warn");
    expect(bad.detail.split("\n")).toEqual([
      "8 errors and 0 warnings in the last 9 lines of the file x; the last errors:",
      ...lines.slice(-5).map((l) => `  ${l}`),
    ]);
  });

  test("--agent-log FILE: text and JSON lines are counted; the check warns naming the file", async () => {
    const dir = temp();
    const file = join(dir, "agent.log");
    writeFileSync(
      file,
      [
        "[agent] starting",
        '{"time":"2026-12-01T12:00:00Z","level":"warn","component":"podman","msg":"event stream ended"}',
        "[controlplane] error: GET expected-state failed: 503",
        '{"time":"2026-12-01T12:00:01Z","level":"error","component":"reconcile","msg":"deploy web-1 failed"}',
        "",
      ].join("\n"),
    );
    const ctx = doctorContext(join(dir, "data"), { paths: hostFiles(dir, {}), agentLogFile: file });
    const result = await logCheck.run(ctx);
    expect(result.status).toBe("warn");
    expect(result.detail.split("\n")[0]).toBe(`2 errors and 1 warning in the last 4 lines of the file ${file}; the last errors:`);
    expect(result.detail).toContain("GET expected-state failed: 503");
    expect(result.detail).toContain("deploy web-1 failed");
    expect(result.fix?.description).toContain(`less ${file}`);

    const missing = await logCheck.run(doctorContext(join(dir, "data"), { paths: hostFiles(dir, {}) }));
    expect(missing.status).toBe("skip");
    expect(missing.detail).toContain("pass --agent-log FILE");
  });
});
