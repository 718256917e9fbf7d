import { existsSync, statSync } from "node:fs";
import { AgentError } from "../errors.ts";
import { logger } from "../logger.ts";
import type { ProxyDriver } from "../drivers.ts";
import { CaddyDriver, type CaddyDriverOptions } from "./CaddyDriver.ts";
import { DEFAULT_TRAEFIK_DYNAMIC_DIR, TraefikDriver, type TraefikDriverOptions } from "./TraefikDriver.ts";

const log = logger("proxy");

export type ProxyDriverChoice = "auto" | "caddy" | "traefik";

export interface SelectProxyDriverOptions {
  /** `--proxy-driver`. */
  driver: ProxyDriverChoice;
  /** `--caddy-admin-url`. */
  caddyAdminUrl?: string;
  /** `--traefik-dynamic-dir`. */
  traefikDynamicDir?: string;
  /** Further driver options (the two settings above win over their fields here). */
  caddy?: CaddyDriverOptions;
  traefik?: TraefikDriverOptions;
}

/**
 * The proxy driver of a proxy node: the one named, or with `auto` Caddy when its admin API
 * answers, else Traefik when its dynamic folder exists. Worker nodes have no proxy driver at all.
 */
export async function selectProxyDriver(options: SelectProxyDriverOptions): Promise<ProxyDriver> {
  const caddyOptions: CaddyDriverOptions = { ...options.caddy, ...(options.caddyAdminUrl ? { adminUrl: options.caddyAdminUrl } : {}) };
  const traefikOptions: TraefikDriverOptions = { ...options.traefik, ...(options.traefikDynamicDir ? { dynamicDir: options.traefikDynamicDir } : {}) };
  if (options.driver === "caddy") return new CaddyDriver(caddyOptions);
  if (options.driver === "traefik") return new TraefikDriver(traefikOptions);
  const caddy = new CaddyDriver(caddyOptions);
  if (await caddy.reachable()) {
    log.info(`proxy driver: caddy (admin API answers at ${caddy.adminUrl})`);
    return caddy;
  }
  const dynamicDir = traefikOptions.dynamicDir ?? DEFAULT_TRAEFIK_DYNAMIC_DIR;
  if (existsSync(dynamicDir) && statSync(dynamicDir).isDirectory()) {
    log.info(`proxy driver: traefik (dynamic folder ${dynamicDir} exists)`);
    return new TraefikDriver(traefikOptions);
  }
  throw new AgentError(`no proxy found for this proxy node: Caddy's admin API does not answer at ${caddy.adminUrl} and ${dynamicDir} does not exist`, {
    hint: "start Caddy or Traefik, or name the driver and its location: --proxy-driver caddy --caddy-admin-url URL, or --proxy-driver traefik --traefik-dynamic-dir DIR",
  });
}
