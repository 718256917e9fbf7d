import { describe, expect, test } from "bun:test";
import { InvalidInputError } from "../../lib/errors.ts";
import {
  isCidr,
  isContainerName,
  isDomainName,
  isEndpoint,
  isEnvName,
  isIPv4Address,
  isIPv6Address,
  isPathSegment,
  isPort,
  isSafeId,
  normalizeCidr,
  normalizeDomainName,
  normalizeEndpoint,
  parseIPv4Address,
  parseWireGuardKey,
} from "../../lib/state/validate.ts";
import { generateWireGuardPrivateKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";

describe("IPv4 addresses", () => {
  test.each(["10.0.0.1", "0.0.0.0", "255.255.255.255", "10.200.1.2"])("accepts %s", (ip) => {
    expect(isIPv4Address(ip)).toBe(true);
    expect(parseIPv4Address(ip)).toBe(ip);
  });
  test.each(["10.0.0.999", "10.0.0", "10.0.0.1.2", "010.0.0.1", " 10.0.0.1", "10.0.0.1/24", "::1", "", "a.b.c.d"])("rejects %j", (ip) => {
    expect(isIPv4Address(ip)).toBe(false);
    expect(() => parseIPv4Address(ip)).toThrow(InvalidInputError);
  });
  test("the message names the value", () => {
    expect(() => parseIPv4Address("10.0.0.999")).toThrow('"10.0.0.999" is not an IPv4 address');
  });
});

describe("IPv6 addresses", () => {
  test.each(["::1", "::", "2001:db8::1", "fe80::1:2", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4"])("accepts %s", (ip) => {
    expect(isIPv6Address(ip)).toBe(true);
  });
  test.each(["1::2::3", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "fe80::1%eth0", "12345::1", "g::1", "1.2.3.4", ":1::2"])("rejects %s", (ip) => {
    expect(isIPv6Address(ip)).toBe(false);
  });
});

describe("CIDRs", () => {
  test.each([
    ["10.100.2.0/24", "10.100.2.0/24"],
    ["10.100.2.1/32", "10.100.2.1/32"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["10.100.2.7/24", "10.100.2.0/24"],
    ["10.255.255.255/9", "10.128.0.0/9"],
    ["2001:DB8:0:0::1/64", "2001:db8::/64"],
    ["fd00::1/128", "fd00::1/128"],
    ["::/0", "::/0"],
    ["1:0:0:1:0:0:0:1/128", "1:0:0:1::1/128"],
  ])("%s ⇒ %s (host bits cleared, as WireGuard stores it)", (input, expected) => {
    expect(normalizeCidr(input)).toBe(expected);
  });
  test.each(["10.100.2.0", "10.100.2.0/33", "10.100.2.0/", "10.100.2.0/024", "10.100.2.0/-1", "10.100.2.999/24", "10.100.2.0/24/1", "fd00::/129", "x/8", "/8", ""])(
    "rejects %j",
    (value) => {
      expect(isCidr(value)).toBe(false);
      expect(() => normalizeCidr(value)).toThrow("is not a CIDR");
    },
  );
});

describe("host:port endpoints", () => {
  test.each([
    ["203.0.113.7:51820", "203.0.113.7:51820"],
    ["[2001:DB8::1]:51820", "[2001:db8::1]:51820"],
    ["Node-1.Example.com:443", "node-1.example.com:443"],
    ["api.internal:3000", "api.internal:3000"],
    ["localhost:1", "localhost:1"],
    ["10.200.1.2:65535", "10.200.1.2:65535"],
  ])("%s ⇒ %s", (input, expected) => {
    expect(normalizeEndpoint(input)).toBe(expected);
  });
  test.each([
    ["203.0.113.7", "no port"],
    ["203.0.113.7:0", "port must be 1–65535"],
    ["203.0.113.7:65536", "port must be 1–65535"],
    ["203.0.113.7:080", "port must be 1–65535"],
    ["203.0.113.7:", "port must be 1–65535"],
    ["2001:db8::1:51820", "in brackets"],
    ["[2001:db8::zz]:51820", "bad IPv6"],
    ["10.0.0.999:80", "bad IPv4"],
    ["bad_host:80", "bad host name"],
    ["-x.example:80", "bad host name"],
    [":80", "bad host name"],
    ["a b:80", "bad host name"],
  ])("rejects %j (%s)", (input, why) => {
    expect(isEndpoint(input)).toBe(false);
    expect(() => normalizeEndpoint(input)).toThrow(why);
  });
});

describe("domain names", () => {
  test.each([
    ["api.internal", "api.internal"],
    ["API.Internal", "api.internal"],
    ["a", "a"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
    ["1.example.com", "1.example.com"],
    [`${"a".repeat(63)}.com`, `${"a".repeat(63)}.com`],
  ])("%s ⇒ %s", (input, expected) => {
    expect(normalizeDomainName(input)).toBe(expected);
  });
  test.each(["", "a..b", ".a", "a.", "-a.com", "a-.com", "a_b.com", "a b.com", `${"a".repeat(64)}.com`, "10.0.0.999", "1.2.3.4", `${"a.".repeat(127)}ab`, "*.example.com", "é.com"])(
    "rejects %j",
    (input) => {
      expect(isDomainName(input)).toBe(false);
      expect(() => normalizeDomainName(input)).toThrow("is not a valid domain name");
    },
  );
  test("a leading *. is accepted only where wildcards are allowed (routes)", () => {
    expect(normalizeDomainName("*.Example.com", { allowWildcard: true })).toBe("*.example.com");
    expect(isDomainName("a.*.example.com", { allowWildcard: true })).toBe(false);
    expect(isDomainName("*", { allowWildcard: true })).toBe(false);
    expect(isDomainName("**.example.com", { allowWildcard: true })).toBe(false);
  });
});

describe("names, ports, ids and keys", () => {
  test("container names", () => {
    for (const ok of ["web-1a2b3c4d", "a", "A.b_c-d", "9", "x".repeat(253)]) expect(isContainerName(ok)).toBe(true);
    for (const bad of ["", "-web", ".web", "_web", "web 1", "web/1", "web;id", "x".repeat(254)]) expect(isContainerName(bad)).toBe(false);
  });
  test("env names", () => {
    for (const ok of ["PATH", "_X", "a1_B2"]) expect(isEnvName(ok)).toBe(true);
    for (const bad of ["", "1X", "A-B", "A B", "A=B", "Ä"]) expect(isEnvName(bad)).toBe(false);
  });
  test("ports", () => {
    for (const ok of [1, 80, 65535]) expect(isPort(ok)).toBe(true);
    for (const bad of [0, -1, 65536, 1.5, Number.NaN]) expect(isPort(bad)).toBe(false);
  });
  test("ids and path segments cannot climb out of a folder", () => {
    for (const ok of ["svc_1", "0b8a3c3e-6c1f-4a4e-9d55-1d2f3a4b5c6d", "-nano_ID"]) expect(isSafeId(ok)).toBe(true);
    for (const bad of ["", ".", "..", "../x", "a/b", "a b", "x".repeat(129)]) expect(isSafeId(bad)).toBe(false);
    for (const ok of ["data", "pg-data.1"]) expect(isPathSegment(ok)).toBe(true);
    for (const bad of ["", ".", "..", ".hidden", "a/b", "a\0b"]) expect(isPathSegment(bad)).toBe(false);
  });
  test("WireGuard public keys", () => {
    const key = wireGuardPublicKey(generateWireGuardPrivateKey());
    expect(parseWireGuardKey(key)).toBe(key);
    expect(() => parseWireGuardKey(key.slice(1))).toThrow("is not a WireGuard public key");
    expect(() => parseWireGuardKey(Buffer.alloc(31).toString("base64"))).toThrow(InvalidInputError);
  });
});
