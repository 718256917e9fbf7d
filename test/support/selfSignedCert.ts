import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../lib/exec.ts";
import type { Certificate } from "../../lib/state/types.ts";

/** A throwaway self-signed certificate for `domain` (EC P-256, one day), made with openssl. */
export async function selfSignedCertificate(domain: string): Promise<Certificate> {
  const dir = mkdtempSync(join(tmpdir(), "cert-"));
  try {
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    await run("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", cert, "-days", "1", "-subj", `/CN=${domain}`, "-addext", `subjectAltName=DNS:${domain}`,
    ], { timeoutMs: 30_000 });
    return { domain, certificate: readFileSync(cert, "utf8"), certificateKey: readFileSync(key, "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
