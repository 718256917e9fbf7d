import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, renameSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { accessLogLine, parseAccessLine } from "../../lib/logs/accessLog.ts";
import { FileTailer } from "../../lib/logs/FileTailer.ts";
import { CADDY_ACCESS_LOGGER, mergeLogging, mergeServerLogs } from "../../lib/proxy/caddyConfig.ts";
import { tempDir } from "../support/agentBinary.ts";

const tmp = tempDir("access-log-");
afterAll(() => tmp.cleanup());

// Shaped like Caddy 2.6's access log entries (fields it writes; headers abridged).
const caddyLine = JSON.stringify({
  level: "info",
  ts: 1764583200.1234567,
  logger: `http.log.access.${CADDY_ACCESS_LOGGER}`,
  msg: "handled request",
  request: { remote_ip: "10.0.0.7", remote_port: "51234", proto: "HTTP/1.1", method: "POST", host: "app.example.com:8080", uri: "/api/items?token=secret", headers: { "User-Agent": ["curl"] } },
  bytes_read: 12,
  user_id: "",
  duration: 0.0123456,
  size: 512,
  status: 201,
  resp_headers: { "Content-Type": ["text/plain"], "X-Techulus-Service-Id": ["svc-1"] },
});

// Shaped like Traefik v3's JSON access log with the service id header kept.
const traefikLine = JSON.stringify({
  ClientAddr: "10.0.0.8:40000",
  ClientHost: "10.0.0.8",
  DownstreamContentSize: 42,
  DownstreamStatus: 404,
  Duration: 2_500_000,
  RequestHost: "web.example.com",
  RequestMethod: "GET",
  RequestPath: "/missing#frag",
  RouterName: "techulus-r1@file",
  StartUTC: "2026-12-01T10:00:00.5Z",
  "downstream_X-Techulus-Service-Id": "svc-2",
  level: "info",
  msg: "",
  time: "2026-12-01T10:00:00Z",
});

describe("access log lines", () => {
  test("Caddy: request fields, the service id from the response header, no query string, time of the request", () => {
    const record = parseAccessLine("caddy", caddyLine)!;
    expect(record).toEqual({
      time: new Date(1764583200123),
      serviceId: "svc-1",
      host: "app.example.com",
      method: "POST",
      path: "/api/items",
      status: 201,
      durationMs: 12.346,
      bytes: 512,
      clientIp: "10.0.0.7",
    });
    const line = accessLogLine(record);
    expect(line.fields).toEqual({ log_type: "http", service_id: "svc-1", host: "app.example.com", method: "POST", path: "/api/items", status: 201, duration_ms: 12.346, bytes: 512, client_ip: "10.0.0.7" });
    expect(line.time).toEqual(record.time);
    expect(JSON.stringify(line)).not.toContain("secret");
  });

  test("Traefik: StartUTC, Duration in nanoseconds, the kept downstream header", () => {
    expect(parseAccessLine("traefik", traefikLine)).toEqual({
      time: new Date("2026-12-01T10:00:00.5Z"),
      serviceId: "svc-2",
      host: "web.example.com",
      method: "GET",
      path: "/missing",
      status: 404,
      durationMs: 2.5,
      bytes: 42,
      clientIp: "10.0.0.8",
    });
  });

  test("a line that is not an access log entry of that format is undefined, never an exception", () => {
    for (const bad of ["", "not json", "[1,2]", "null", '{"ts":"x"}', JSON.stringify({ level: "info", ts: 1, msg: "server running" }), traefikLine]) {
      expect(parseAccessLine("caddy", bad)).toBeUndefined();
    }
    expect(parseAccessLine("traefik", caddyLine)).toBeUndefined();
  });
});

describe("FileTailer", () => {
  test("reads appended lines from where the file ended, then follows a rename-and-create rotation and a truncation", () => {
    const file = join(tmp.path, "access.log");
    writeFileSync(file, "old 1\nold 2\n");
    const tail = new FileTailer(file);
    expect(tail.poll()).toEqual([]);
    appendFileSync(file, "a\nb");
    expect(tail.poll()).toEqual(["a"]);
    appendFileSync(file, "c\n");
    expect(tail.poll()).toEqual(["bc"]);

    appendFileSync(file, "last of the old file\n");
    renameSync(file, `${file}.1`);
    expect(tail.poll()).toEqual(["last of the old file"]);
    writeFileSync(file, "first of the new file\n");
    expect(tail.poll()).toEqual(["first of the new file"]);

    truncateSync(file, 0);
    appendFileSync(file, "after truncation\n");
    expect(tail.poll()).toEqual(["after truncation"]);
    tail.close();
  });

  test("a file created after the tailer started is read from its start; maxLines leaves the rest for the next poll", () => {
    const file = join(tmp.path, "later.log");
    const tail = new FileTailer(file);
    expect(tail.poll()).toEqual([]);
    writeFileSync(file, "1\n2\n3\n");
    expect(tail.poll(2)).toEqual(["1", "2"]);
    expect(tail.poll(2)).toEqual(["3"]);
    tail.close();
  });
});

describe("Caddy logging config", () => {
  test("the agent's domains map to its logger; an operator's mappings and loggers stay; stale mappings go", () => {
    const live = { logger_names: { "mine.example.com": "ops", "gone.example.com": CADDY_ACCESS_LOGGER } };
    const routes = [{ id: "r1", domain: "app.example.com", upstreams: ["10.0.0.1:80"], serviceId: "s1" }];
    expect(mergeServerLogs(live, routes)).toEqual({ logger_names: { "mine.example.com": "ops", "app.example.com": CADDY_ACCESS_LOGGER } });
    expect(mergeServerLogs(undefined, routes)).toEqual({ skip_unmapped_hosts: true, logger_names: { "app.example.com": CADDY_ACCESS_LOGGER } });
    const logging = mergeLogging({ logs: { default: { level: "INFO" } } }, "/var/log/x.log");
    expect(logging.logs).toEqual({
      default: { level: "INFO" },
      [CADDY_ACCESS_LOGGER]: {
        writer: { output: "file", filename: "/var/log/x.log", roll_size_mb: 50, roll_keep: 3 },
        encoder: { format: "json" },
        include: [`http.log.access.${CADDY_ACCESS_LOGGER}`],
      },
    });
  });
});
