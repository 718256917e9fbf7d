import { describe, expect, test } from "bun:test";
import { parseReservation } from "../../lib/podman/cniReservations.ts";
import { parseConmonCommandLine, type ConmonProcess } from "../../lib/podman/conmonProcesses.ts";
import { describeLeftover, findLeftovers, healsByItself, needsOf, remedyOf, type KnownContainer, type LeftoverSnapshot } from "../../lib/podman/leftovers.ts";
import { parseLocalAddresses, parseSocketTable } from "../../lib/procNet.ts";

const ID_A = "a".repeat(64);
const ID_B = "b".repeat(64);
const ID_GONE = "c".repeat(64);

describe("/proc/net parsers", () => {
  test("listening TCP sockets with their port and inode; established ones are left out", () => {
    const table = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 00000000:1F98 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0",
      "   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0",
      "   2: 0100007F:9C40 0100007F:1F98 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1",
    ].join("\n");
    expect(parseSocketTable(table, "tcp")).toEqual([
      { protocol: "tcp", port: 8088, inode: 41234 },
      { protocol: "tcp", port: 53, inode: 555 },
    ]);
  });

  test("UDP sockets count when bound and unconnected (state 07)", () => {
    const table = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops", "  100: 00000000:CA6C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9001 2 0000000000000000 0"].join("\n");
    expect(parseSocketTable(table, "udp")).toEqual([{ protocol: "udp", port: 51820, inode: 9001 }]);
    expect(parseSocketTable(table, "tcp")).toEqual([]);
  });

  test("local addresses of a network namespace from fib_trie, loopback left out, each once", () => {
    const trie = [
      "Main:",
      "  +-- 0.0.0.0/0 3 0 5",
      "     |-- 0.0.0.0",
      "        /0 universe UNICAST",
      "     +-- 10.200.7.0/24 2 0 2",
      "        |-- 10.200.7.0",
      "           /24 link UNICAST",
      "        |-- 10.200.7.14",
      "           /32 host LOCAL",
      "     |-- 127.0.0.1",
      "        /32 host LOCAL",
      "Local:",
      "        |-- 10.200.7.14",
      "           /32 host LOCAL",
    ].join("\n");
    expect(parseLocalAddresses(trie)).toEqual(["10.200.7.14"]);
  });
});

describe("conmon command lines", () => {
  const argv = [
    "/usr/bin/conmon", "--api-version", "1", "-c", ID_A, "-u", ID_A, "-r", "/usr/bin/runc",
    "-b", `/var/lib/containers/storage/overlay-containers/${ID_A}/userdata`, "-n", "web-1",
    "--exit-dir", "/run/libpod/exits", "--exit-command", "/usr/bin/podman",
    "--exit-command-arg", "--root", "--exit-command-arg", "/var/lib/containers/storage",
    "--exit-command-arg", "--runroot", "--exit-command-arg", "/run/containers/storage",
    "--exit-command-arg", "container", "--exit-command-arg", "cleanup", "--exit-command-arg", ID_A,
  ];

  test("give the container id, its name and the storage root of the podman that started it", () => {
    expect(parseConmonCommandLine(argv)).toEqual({ containerId: ID_A, name: "web-1", storageRoot: "/var/lib/containers/storage" });
  });

  test("anything that is not conmon, or has no valid container id, is not a conmon", () => {
    expect(parseConmonCommandLine(["/usr/bin/podman", "-c", ID_A])).toBeUndefined();
    expect(parseConmonCommandLine(["/usr/bin/conmon", "-c", "../../etc"])).toBeUndefined();
    expect(parseConmonCommandLine(["/usr/bin/conmon"])).toBeUndefined();
  });
});

test("a CNI reservation names its container on the first line", () => {
  expect(parseReservation(`${ID_A}\r\neth0`)).toBe(ID_A);
  expect(parseReservation(ID_A)).toBe(ID_A);
  expect(parseReservation("not an id\neth0")).toBeUndefined();
  expect(parseReservation("")).toBeUndefined();
});

function conmon(overrides: Partial<ConmonProcess>): ConmonProcess {
  return { pid: 4242, containerId: ID_GONE, name: "web-1", storageRoot: "/var/lib/containers/storage", containerPid: 4243, ports: [], addresses: [], ...overrides };
}

function known(overrides: Partial<KnownContainer>): KnownContainer {
  return { id: ID_A, name: "web-1", state: "running", managed: true, ...overrides };
}

describe("finding leftovers", () => {
  const needs = { ports: [8088], addresses: ["10.200.1.14"] };

  test("needsOf: the published host ports and the addresses of the expected containers", () => {
    const state = {
      containers: [
        { ports: [{ containerPort: 80, hostPort: 8088 }, { containerPort: 9000 }], ipAddress: "10.200.1.14" },
        { ports: [{ containerPort: 80, hostPort: 8081 }], ipAddress: "10.200.1.11" },
      ],
    } as never;
    expect(needsOf(state)).toEqual({ ports: [8081, 8088], addresses: ["10.200.1.11", "10.200.1.14"] });
  });

  test("a conmon of an unknown container holding a needed port is stray and repaired by the agent itself", () => {
    const snapshot: LeftoverSnapshot = { containers: [known({})], conmons: [conmon({ ports: [{ protocol: "tcp", port: 8088, inode: 1 }] })], reservations: [] };
    const [found, ...rest] = findLeftovers(snapshot, needs);
    expect(rest).toEqual([]);
    expect(found).toMatchObject({ kind: "stray-conmon", holds: ["TCP port 8088"], needed: ["TCP port 8088"] });
    expect(healsByItself(found!)).toBe(true);
    expect(describeLeftover(found!)).toBe(`conmon pid 4242 of container web-1 (${ID_GONE.slice(0, 12)}), which Podman no longer knows, still runs, holding TCP port 8088`);
    expect(remedyOf(found!)).toBe("stop conmon pid 4242 and its container process");
  });

  test("a stray conmon holding nothing the expected state needs is reported, but only a person's fix stops it", () => {
    const [found] = findLeftovers({ containers: [], conmons: [conmon({ ports: [{ protocol: "tcp", port: 9999, inode: 1 }] })], reservations: [] }, needs);
    expect(found).toMatchObject({ kind: "stray-conmon", holds: ["TCP port 9999"], needed: [] });
    expect(healsByItself(found!)).toBe(false);
  });

  test("the conmon of a container Podman knows is not a leftover", () => {
    expect(findLeftovers({ containers: [known({})], conmons: [conmon({ containerId: ID_A, ports: [{ protocol: "tcp", port: 8088, inode: 1 }] })], reservations: [] }, needs)).toEqual([]);
  });

  test("managed containers stuck stopping or removing are leftovers; unmanaged ones are not the agent's", () => {
    const found = findLeftovers(
      { containers: [known({ state: "stopping" }), known({ id: ID_B, name: "web-2", state: "removing" }), known({ id: ID_GONE, name: "theirs", state: "stopping", managed: false })], conmons: [], reservations: [] },
      needs,
    );
    expect(found.map((l) => [l.kind, "container" in l ? l.container.name : ""])).toEqual([
      ["stuck-container", "web-1"],
      ["stuck-container", "web-2"],
    ]);
    expect(remedyOf(found[0]!)).toBe("finish stopping web-1");
    expect(remedyOf(found[1]!)).toBe("finish removing web-2");
  });

  test("a reservation naming an unknown container is stale; one naming a known container is not", () => {
    const reservations = [
      { address: "10.200.1.14", containerId: ID_GONE, file: "/var/lib/cni/networks/techulus/10.200.1.14" },
      { address: "10.200.1.11", containerId: ID_A, file: "/var/lib/cni/networks/techulus/10.200.1.11" },
    ];
    const found = findLeftovers({ containers: [known({})], conmons: [], reservations }, needs);
    expect(found).toEqual([{ kind: "stale-reservation", reservation: reservations[0]! }]);
    expect(healsByItself(found[0]!)).toBe(true);
  });

  test("an unmanaged container holding a needed address (its reservation) or port (its conmon) is a foreign holder, never repaired", () => {
    const theirs = known({ id: ID_B, name: "theirs", managed: false });
    const found = findLeftovers(
      {
        containers: [theirs],
        conmons: [conmon({ containerId: ID_B, ports: [{ protocol: "tcp", port: 8088, inode: 1 }], addresses: ["10.200.1.14"] })],
        reservations: [{ address: "10.200.1.14", containerId: ID_B, file: "x" }],
      },
      needs,
    );
    expect(found).toEqual([{ kind: "foreign-holder", container: theirs, needed: ["TCP port 8088", "address 10.200.1.14"] }]);
    expect(healsByItself(found[0]!)).toBe(false);
    expect(describeLeftover(found[0]!)).toContain("container theirs");
    expect(remedyOf(found[0]!)).toContain("podman stop theirs");
  });

  test("an unmanaged container holding nothing needed is none of the agent's business", () => {
    const theirs = known({ id: ID_B, name: "theirs", managed: false });
    expect(findLeftovers({ containers: [theirs], conmons: [conmon({ containerId: ID_B, addresses: ["10.200.1.99"] })], reservations: [] }, needs)).toEqual([]);
  });
});
