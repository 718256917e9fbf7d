import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { AgentError } from "../errors.ts";
import { writeFileAtomic } from "../fs/atomicWrite.ts";
import { logger } from "../logger.ts";
import { registerSecret } from "../redact.ts";
import type { ProxyDriver } from "../drivers.ts";
import { sortCertificates } from "../state/hash.ts";
import type { Certificate, Route } from "../state/types.ts";
import { assertValidProxyInput, installable } from "./proxyInput.ts";
import {
  ROUTES_FILE,
  TLS_FILE,
  certificateFileStem,
  domainOfCertificateFile,
  isManagedCertificateFile,
  parseRoutesYaml,
  parseTlsYaml,
  renderRoutesYaml,
  renderTlsYaml,
  type TlsEntry,
} from "./traefikFiles.ts";

const log = logger("traefik");

export const DEFAULT_TRAEFIK_DYNAMIC_DIR = "/etc/traefik/dynamic";

export interface TraefikDriverOptions {
  /** The folder Traefik's file provider watches (`providers.file.directory`); default /etc/traefik/dynamic. */
  dynamicDir?: string;
  /** Where certificate and key PEM files go (0700, files 0600); default `<dynamicDir>/../certs`. */
  certsDir?: string;
  /** Entry points of the routers; default ["websecure"]. */
  entryPoints?: string[];
  /** Routers terminate TLS (`tls: {}`); default true. */
  tls?: boolean;
}

/**
 * Proxy routes for Traefik's file provider: `routes.yaml` and `tls.yaml` in the dynamic folder,
 * both owned by the agent and replaced atomically (Traefik watches the folder and reloads).
 * observe() parses those files back, so an edit or a deleted file is drift.
 */
export class TraefikDriver implements ProxyDriver {
  readonly name = "traefik" as const;
  readonly dynamicDir: string;
  readonly certsDir: string;
  private readonly options: TraefikDriverOptions;

  constructor(options: TraefikDriverOptions = {}) {
    this.dynamicDir = options.dynamicDir ?? DEFAULT_TRAEFIK_DYNAMIC_DIR;
    this.certsDir = options.certsDir ?? join(dirname(this.dynamicDir), "certs");
    this.options = options;
  }

  get routesFile(): string {
    return join(this.dynamicDir, ROUTES_FILE);
  }
  get tlsFile(): string {
    return join(this.dynamicDir, TLS_FILE);
  }

  async observe(): Promise<{ routes: Route[]; certificates: Certificate[] }> {
    return { routes: this.readRoutes(), certificates: this.readCertificates() };
  }

  async apply(routes: Route[], certificates: Certificate[]): Promise<void> {
    assertValidProxyInput(routes, certificates);
    const wanted = installable(routes);
    this.ensureDir(this.dynamicDir, 0o755);
    this.ensureDir(this.certsDir, 0o700);

    const entries: TlsEntry[] = [];
    for (const cert of sortCertificates(certificates)) {
      registerSecret(cert.certificateKey);
      const stem = certificateFileStem(cert);
      const entry = { certFile: join(this.certsDir, `${stem}.crt`), keyFile: join(this.certsDir, `${stem}.key`) };
      if (readOrUndefined(entry.certFile) !== cert.certificate) writeFileAtomic(entry.certFile, cert.certificate, { mode: 0o600 });
      if (readOrUndefined(entry.keyFile) !== cert.certificateKey) writeFileAtomic(entry.keyFile, cert.certificateKey, { mode: 0o600 });
      entries.push(entry);
    }
    // Certificates before routes, so a new route's certificate is there when the router appears.
    writeFileAtomic(this.tlsFile, renderTlsYaml(entries), { mode: 0o644 });
    const routeOptions = { entryPoints: this.options.entryPoints ?? ["websecure"], tls: this.options.tls ?? true };
    writeFileAtomic(this.routesFile, renderRoutesYaml(wanted, routeOptions), { mode: 0o644 });
    this.removeStaleCertificateFiles(entries);
    log.info(`wrote ${wanted.length} route(s) and ${entries.length} certificate(s) to ${this.dynamicDir}`);
  }

  private readRoutes(): Route[] {
    const text = readOrUndefined(this.routesFile);
    if (text === undefined) return [];
    try {
      return parseRoutesYaml(text);
    } catch (err) {
      log.warn(`${this.routesFile} is not valid YAML (${(err as Error).message}); treating it as holding no routes`);
      return [];
    }
  }

  private readCertificates(): Certificate[] {
    const text = readOrUndefined(this.tlsFile);
    if (text === undefined) return [];
    let entries: TlsEntry[];
    try {
      entries = parseTlsYaml(text);
    } catch (err) {
      log.warn(`${this.tlsFile} is not valid YAML (${(err as Error).message}); treating it as holding no certificates`);
      return [];
    }
    const out: Certificate[] = [];
    for (const entry of entries) {
      const domain = domainOfCertificateFile(entry.certFile);
      if (domain === undefined || dirname(entry.certFile) !== this.certsDir) continue;
      const certificate = readOrUndefined(entry.certFile);
      const certificateKey = readOrUndefined(entry.keyFile);
      if (certificate === undefined || certificateKey === undefined) continue;
      registerSecret(certificateKey);
      out.push({ domain, certificate, certificateKey });
    }
    return sortCertificates(out);
  }

  private removeStaleCertificateFiles(entries: readonly TlsEntry[]): void {
    const keep = new Set(entries.flatMap((e) => [e.certFile, e.keyFile]));
    for (const name of readdirSync(this.certsDir)) {
      const path = join(this.certsDir, name);
      if (isManagedCertificateFile(name) && !keep.has(path)) rmSync(path, { force: true });
    }
  }

  private ensureDir(dir: string, mode: number): void {
    try {
      mkdirSync(dir, { recursive: true, mode });
      if (!statSync(dir).isDirectory()) throw new Error("not a directory");
      if (mode === 0o700 && (statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
    } catch (err) {
      throw new AgentError(`cannot use ${dir} for Traefik's configuration: ${(err as Error).message}`, {
        hint: "set --traefik-dynamic-dir to the folder Traefik's file provider watches",
      });
    }
  }
}

function readOrUndefined(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, "utf8") : undefined;
}
