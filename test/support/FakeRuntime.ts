import type { ContainerEvent, ContainerRuntime, DeployContext } from "../../lib/drivers.ts";
import type { ActualContainer, ExpectedContainer } from "../../lib/state/types.ts";

/**
 * In-memory ContainerRuntime for unit tests of the reconcile loop only (the real one is tested
 * against Podman). Records every call so tests can assert what the loop did.
 */
export class FakeRuntime implements ContainerRuntime {
  readonly containers = new Map<string, ActualContainer>();
  readonly calls: string[] = [];
  readonly decrypted: Record<string, Record<string, string>> = {};
  failDeployOf = new Set<string>();
  private listeners = new Set<(e: ContainerEvent) => void>();
  private nextId = 1;

  add(container: Partial<ActualContainer> & Pick<ActualContainer, "name" | "image" | "serviceId">): ActualContainer {
    const c: ActualContainer = { id: `c${this.nextId++}`, state: "running", health: "none", ...container };
    this.containers.set(c.id, c);
    return c;
  }

  async listManaged(): Promise<ActualContainer[]> {
    this.calls.push("list");
    return [...this.containers.values()].map((c) => ({ ...c }));
  }

  async deploy(container: ExpectedContainer, context: DeployContext): Promise<string> {
    this.calls.push(`deploy ${container.name}`);
    if (this.failDeployOf.has(container.name)) throw new Error(`pull of ${container.image} failed`);
    this.decrypted[container.name] = Object.fromEntries(Object.entries(container.env).map(([k, v]) => [k, context.decryptEnv(k, v)]));
    const c = this.add({ name: container.name, image: container.image, serviceId: container.serviceId, deploymentId: container.deploymentId, ipAddress: container.ipAddress });
    return c.id;
  }

  async start(id: string): Promise<void> {
    this.calls.push(`start ${id}`);
    this.get(id).state = "running";
  }

  async stop(id: string): Promise<void> {
    this.calls.push(`stop ${id}`);
    this.get(id).state = "exited";
  }

  async remove(id: string): Promise<void> {
    this.calls.push(`remove ${id}`);
    this.get(id);
    this.containers.delete(id);
  }

  async restart(id: string): Promise<void> {
    this.calls.push(`restart ${id}`);
    this.get(id).state = "running";
  }

  async ensureNetwork(subnetId: number): Promise<void> {
    this.calls.push(`network ${subnetId}`);
  }

  subscribe(onEvent: (event: ContainerEvent) => void): () => void {
    this.listeners.add(onEvent);
    return () => this.listeners.delete(onEvent);
  }

  /** Simulates a container dying outside the agent's control. */
  kill(id: string): void {
    const c = this.get(id);
    c.state = "exited";
    c.exitCode = 137;
    for (const l of this.listeners) l({ containerId: id, status: "died", serviceId: c.serviceId, deploymentId: c.deploymentId });
  }

  async close(): Promise<void> {}

  private get(id: string): ActualContainer {
    const c = this.containers.get(id);
    if (!c) throw new Error(`no such container ${id}`);
    return c;
  }
}
