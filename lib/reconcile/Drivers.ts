import type { ContainerRuntime, DnsDriver, ProxyDriver, WireGuardDriver } from "../drivers.ts";

/** The drivers in use on this node; a missing one means that part of the state is not managed here. */
export interface Drivers {
  runtime: ContainerRuntime;
  dns?: DnsDriver;
  proxy?: ProxyDriver;
  wireguard?: WireGuardDriver;
}
