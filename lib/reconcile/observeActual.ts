import type { ActualState } from "../state/types.ts";
import type { Drivers } from "./Drivers.ts";

/** Reads the live state of every driver in use, in parallel. */
export async function observeActual(drivers: Drivers): Promise<ActualState> {
  const [containers, dns, proxy, peers] = await Promise.all([
    drivers.runtime.listManaged(),
    drivers.dns?.observe(),
    drivers.proxy?.observe(),
    drivers.wireguard?.observe(),
  ]);
  return { containers, dns, routes: proxy?.routes, certificates: proxy?.certificates, peers };
}
