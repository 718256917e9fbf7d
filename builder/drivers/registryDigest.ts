import { Agent, request } from "../../lib/http/undici.ts";
import { errorMessage } from "../../lib/errors.ts";
import type { ImageRef } from "../imageRef.ts";

const MANIFEST_TYPES = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/**
 * The digest a registry reports for `image` (`HEAD /v2/<name>/manifests/<tag>`, the
 * Docker-Content-Digest header). Used when the push tool could not say it (podman in remote mode
 * ignores --digestfile). Anonymous only; an insecure registry is tried over plain HTTP first.
 */
export async function registryDigest(image: ImageRef, insecure: boolean, timeoutMs = 15_000): Promise<string> {
  const path = `/v2/${image.repository}/manifests/${encodeURIComponent(image.tag)}`;
  const attempts = insecure ? [`http://${image.registry}${path}`, `https://${image.registry}${path}`] : [`https://${image.registry}${path}`];
  const dispatcher = new Agent({ connect: { timeout: timeoutMs, rejectUnauthorized: !insecure } });
  const problems: string[] = [];
  try {
    for (const url of attempts) {
      try {
        const res = await request(url, { method: "HEAD", headers: { accept: MANIFEST_TYPES }, dispatcher, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
        await res.body.dump();
        const digest = res.headers["docker-content-digest"];
        if (res.statusCode === 200 && typeof digest === "string") return digest;
        problems.push(`${url}: HTTP ${res.statusCode}`);
      } catch (err) {
        problems.push(`${url}: ${errorMessage(err)}`);
      }
    }
  } finally {
    await dispatcher.close();
  }
  throw new Error(`the registry did not report the pushed digest (${problems.join("; ")})`);
}
