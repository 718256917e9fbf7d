import { expect, test } from "bun:test";
import { encryptSecret } from "../../lib/crypto/secrets.ts";
import { decryptedEnvValues, runCollectors } from "../../lib/doctor/bundle.ts";
import { REDACTED, isSecretName, pemSecrets, redactJson, redactJsonText, scrubList, scrubText, secretValuesIn, urlSecrets } from "../../lib/doctor/bundleRedaction.ts";

const KEY = "a".repeat(64);

test("secret-looking field names are redacted whatever their value; public keys and plain fields stay", () => {
  const config = {
    url: "https://cp.example.com",
    token: "tok-1234567890",
    encryptionKey: KEY,
    githubPrivateKeyFile: "/etc/gh.pem",
    caddyAdminUrl: "http://admin:hunter2pass@127.0.0.1:2019",
    wireguardPort: 51820,
    proxy: false,
    peers: [{ publicKey: "PUBKEYbase64=", allowedIps: "10.100.2.0/24", endpoint: null, presharedKey: "PSKvalue123=" }],
    nested: { dbPassword: 1234567, apiSecret: { a: "b" }, Authorization: "Bearer abcdef123456", emptyToken: "" },
  };
  const out = redactJson(config) as any;
  expect(out.url).toBe("https://cp.example.com");
  expect(out.token).toBe(REDACTED);
  expect(out.encryptionKey).toBe(REDACTED);
  expect(out.githubPrivateKeyFile).toBe(REDACTED);
  expect(out.caddyAdminUrl).toBe(`http://${REDACTED}@127.0.0.1:2019`);
  expect(out.wireguardPort).toBe(51820);
  expect(out.proxy).toBe(false);
  expect(out.peers[0]).toEqual({ publicKey: "PUBKEYbase64=", allowedIps: "10.100.2.0/24", endpoint: null, presharedKey: REDACTED });
  expect(out.nested).toEqual({ dbPassword: REDACTED, apiSecret: REDACTED, Authorization: REDACTED, emptyToken: "" });
  // The input is not changed.
  expect(config.token).toBe("tok-1234567890");
});

test("env maps keep their names and lose every value; Env lists keep NAME=", () => {
  const state = {
    containers: [{ name: "web", env: { DATABASE_URL: "postgres://u:p@db/x", PORT: "8080", EMPTY: "" }, image: "img" }],
    builds: [{ secrets: { NPM_TOKEN: "x" } }],
    inspect: { Config: { Env: ["PATH=/usr/bin", "SECRET=abc", "odd"] } },
    certificates: [{ domain: "a.example", certificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", certificateKey: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----" }],
  };
  const out = redactJson(state) as any;
  expect(out.containers[0]).toEqual({ name: "web", env: { DATABASE_URL: REDACTED, PORT: REDACTED, EMPTY: REDACTED }, image: "img" });
  expect(out.builds[0].secrets).toEqual({ NPM_TOKEN: REDACTED });
  expect(out.inspect.Config.Env).toEqual([`PATH=${REDACTED}`, `SECRET=${REDACTED}`, REDACTED]);
  expect(out.certificates[0].certificate).toContain("BEGIN CERTIFICATE");
  expect(out.certificates[0].certificateKey).toBe(REDACTED);
  // Caddy's load_pem: {certificate, key}
  expect(redactJson({ load_pem: [{ certificate: "C", key: "K", tags: ["t"] }] })).toEqual({ load_pem: [{ certificate: "C", key: REDACTED, tags: ["t"] }] });
});

test("secretValuesIn finds the values to hunt for in other files", () => {
  const values = secretValuesIn({
    token: "tok-abcdef",
    url: "https://user:pa%40ss@cp.example.com",
    containers: [{ env: { A: "enc-one", B: "enc-two" } }],
    Env: ["X=plain-value"],
    nested: { privateKey: { pem: "PEMDATA" } },
    publicKey: "not-a-secret",
  });
  expect(values).toEqual(expect.arrayContaining(["tok-abcdef", "pa%40ss", "pa@ss", "user:pa%40ss", "enc-one", "enc-two", "plain-value", "PEMDATA"]));
  expect(values).not.toContain("not-a-secret");
  expect(urlSecrets("git clone https://x-access-token:ghs_abc@github.com/o/r")).toEqual(expect.arrayContaining(["ghs_abc", "x-access-token:ghs_abc"]));
});

test("scrubText removes known secrets in every form, URL passwords, PEM private keys and secret-named pairs", () => {
  const secret = "s3cr3t-value-XYZ";
  const b64 = Buffer.from(secret).toString("base64");
  const text = [
    `plain ${secret} and base64 ${b64} and hex ${Buffer.from(secret).toString("hex")}`,
    "clone https://x-access-token:p@ss:w@rd@github.com/o/r.git",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAB3NzaC1\n-----END OPENSSH PRIVATE KEY-----",
    '{"level":"info","msg":"x","registrationToken":"abc.def","count":3}',
    "interface: wg0",
    "  public key: PUBKEY=",
    "  private key: (hidden)",
    "  preshared key: SOMEPSK=",
    "GET /x?token=abc123&y=1 password=\"pw pw\"",
    "short 8080 stays",
  ].join("\n");
  const out = scrubText(text, [secret, "8080"]);
  expect(out).not.toContain(secret);
  expect(out).not.toContain(b64);
  expect(out).not.toContain("p@ss");
  expect(out).not.toContain("w@rd");
  expect(out).toContain(`https://${REDACTED}@github.com/o/r.git`);
  expect(out).not.toContain("AAAAB3NzaC1");
  expect(out).toContain(`"registrationToken":"${REDACTED}","count":3`);
  expect(out).toContain("interface: wg0");
  expect(out).toContain("public key: PUBKEY=");
  expect(out).toContain(`private key: ${REDACTED}`);
  expect(out).toContain(`preshared key: ${REDACTED}`);
  expect(out).toContain(`token=${REDACTED}&y=1`);
  expect(out).toContain(`password=${REDACTED}`);
  // Values shorter than 6 characters are not hunted in free text (they would blank ports and digits).
  expect(out).toContain("short 8080 stays");
});

test("scrubList: variants of every secret, longest first", () => {
  const list = scrubList(["abcdef", "abcdefghij"]);
  expect(list[0]!.length).toBeGreaterThanOrEqual(list.at(-1)!.length);
  expect(list).toContain(Buffer.from("abcdef").toString("base64"));
  expect(list).toContain("abcdefghij");
  // the longer secret is replaced whole, not left as "[redacted]ghij"
  expect(scrubText("x abcdefghij y", ["abcdef", "abcdefghij"])).toBe(`x ${REDACTED} y`);
});

test("pemSecrets: the whole PEM, its body and each body line", () => {
  const pem = "-----BEGIN PRIVATE KEY-----\nLINEONE\nLINETWO\n-----END PRIVATE KEY-----\n";
  expect(pemSecrets(pem)).toEqual([pem.trim(), "LINEONELINETWO", "LINEONE", "LINETWO"]);
});

test("redactJsonText: JSON structurally, anything else as text", () => {
  expect(JSON.parse(redactJsonText('{"token":"abc","env":{"A":"1"}}'))).toEqual({ token: REDACTED, env: { A: REDACTED } });
  expect(redactJsonText("not json token=abcdef")).toBe(`not json token=${REDACTED}`);
});

test("decryptedEnvValues: plain values of every env map and build secret that decrypt with the key", () => {
  const state = { containers: [{ env: { A: encryptSecret("plain-a", KEY), B: "not-encrypted" } }], secrets: { S: encryptSecret("plain-s", KEY) } };
  expect(decryptedEnvValues(state, KEY).sort()).toEqual(["plain-a", "plain-s"]);
  expect(decryptedEnvValues(state, "b".repeat(64))).toEqual([]);
});

test("isSecretName is conservative", () => {
  for (const name of ["token", "AGENT_TOKEN", "encryptionKey", "key", "privateKey", "certificateKey", "password", "db_passwd", "clientSecret", "Authorization", "cookie", "presharedKey"]) expect(isSecretName(name)).toBe(true);
  for (const name of ["url", "publicKey", "wireguardPublicKey", "serverId", "subnetId", "buildkitKeepStorage", "image", "host"]) expect(isSecretName(name)).toBe(false);
});

test("runCollectors: a collector that fails or times out adds a note, the others still give their files", async () => {
  const out = await runCollectors([
    { name: "good", timeoutMs: 1000, collect: async () => ({ files: [{ name: "a.txt", description: "a", content: "A\n" }], notes: [] }) },
    { name: "broken", timeoutMs: 1000, collect: async () => Promise.reject(new Error("no such thing at https://u:pw123456@host")) },
    { name: "slow", timeoutMs: 30, collect: () => new Promise(() => {}) },
  ]);
  expect(out.files.map((f) => f.name)).toEqual(["a.txt"]);
  expect(out.notes).toEqual([
    { piece: "broken", reason: "no such thing at https://***@host" },
    { piece: "slow", reason: "timed out after 30 ms" },
  ]);
});
